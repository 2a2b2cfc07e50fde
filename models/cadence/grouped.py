"""One message per person, channel and day: the day's reminders (or escalations) of one person
on one channel go out together, each item's whole text in it.

Planning still stores one notification per item and person (its idempotency key says which
item, due date and stage it is about), so a re-run plans nothing twice and the next day plans
only what crossed a threshold overnight. Delivery claims the pending notifications of a person
on a channel together and sends them as one message (:func:`compose`); the rows are marked
sent together. A message lists at most :data:`MAX_ITEMS` items and about :data:`MAX_CHARS`
characters; a person with more gets several.

Kinds that are one message by nature (a cycle's digest, a check-in request that already lists
a person's items of a cycle, a cycle's recap) are sent one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.cadence.tables import NotificationKind

#: The kinds grouped per person, channel and run (a run is daily).
GROUPED_KINDS = frozenset({NotificationKind.REMINDER, NotificationKind.ESCALATION})
MAX_ITEMS = 50  # items in one message: readable, and well under chat services' size limits
MAX_CHARS = 30_000  # Slack cuts a message at 40,000 characters


@dataclass(frozen=True)
class Item:
    """One claimed notification, as delivery reads it."""

    id: int
    key: str
    kind: NotificationKind
    channel_id: int | None
    recipient: str
    url: str | None  # None: the channel was removed or disabled
    subject: str
    body: str
    attempts: int


@dataclass(frozen=True)
class Message:
    """What one send carries: one notification, or several grouped."""

    items: tuple[Item, ...]
    subject: str
    body: str

    @property
    def url(self) -> str | None:
        return self.items[0].url

    @property
    def ids(self) -> list[int]:
        return [i.id for i in self.items]

    @property
    def words(self) -> str:
        """Which message it is, as a person reads it (the failures a run reports, the state
        of a flow run in the Prefect UI): what, to whom, on which channel."""
        from models.cadence.log import KIND_WORDS, recipient_words

        first = self.items[0]
        what = KIND_WORDS.get(first.kind, "message")
        items = f" ({len(self.items)} items)" if len(self.items) > 1 else ""
        where = f" on channel {first.channel_id}" if first.channel_id is not None else ""
        return f"the {what}{items} to {recipient_words(first.recipient)}{where}"


_SUBJECTS = {
    NotificationKind.REMINDER: "Reminders: {n} of your action items are due soon or overdue",
}
_LEADS = {
    NotificationKind.REMINDER: "{n} of your action items need your attention today:",
}


def _split_greeting(body: str) -> tuple[str | None, str]:
    """``Hi Name,`` and the rest, when the body opens with the planners' greeting."""
    head, sep, rest = body.partition("\n\n")
    if sep and head.startswith("Hi ") and head.endswith(",") and "\n" not in head:
        return head, rest
    return None, body


#: What an escalation is about, by its key's prefix (the planners' keys).
_ESCALATED = (
    ("escalation:", "overdue action item", "overdue action items"),
    ("late-lead:", "lead that waited too long", "leads that waited too long"),
    ("recurring:", "gap that keeps coming back", "gaps that keep coming back"),
)


def _escalated(items: Sequence[Item]) -> str:
    """What several escalations are about, in words: "2 overdue action items and 30 leads that
    waited too long"."""
    parts, known = [], 0
    for prefix, one, many in _ESCALATED:
        n = sum(1 for i in items if i.key.startswith(prefix))
        known += n
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    if len(items) > known:
        n = len(items) - known
        parts.append(f"{n} other {'matter' if n == 1 else 'matters'}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def compose(items: Sequence[Item]) -> Message:
    """One message for ``items`` (same kind, recipient and channel): a single item as it was
    planned; several as one greeting, then each item numbered, with its own subject line and
    its whole text (due date, cycle, status, what to do, its reference)."""
    if len(items) == 1:
        return Message(tuple(items), items[0].subject, items[0].body)
    kind = items[0].kind
    n = len(items)
    greeting = None
    parts = []
    for number, item in enumerate(items, 1):
        hi, rest = _split_greeting(item.body)
        greeting = greeting or hi
        rest = rest.replace("\n\n(ref ", "\n(ref ")  # the reference under its item
        parts.append(f"{number}. {item.subject}\n{rest}")
    if kind is NotificationKind.ESCALATION:
        what = _escalated(items)
        lead = f"{what} need your help today:"
        subject = f"Escalations: {what} need your help"
    else:
        lead = _LEADS.get(kind, "{n} messages:").format(n=n)
        subject = _SUBJECTS.get(kind, "{n} messages").format(n=n)
    opening = f"{greeting}\n\n{lead}" if greeting else lead
    return Message(tuple(items), subject, "\n\n".join([opening, *parts]))


def group_key(item: Item) -> tuple[object, ...]:
    """Items sent together share this: the channel, who it is for, and the kind (a grouped
    kind); any other item is its own group."""
    if item.kind in GROUPED_KINDS and item.channel_id is not None:
        return (item.channel_id, item.recipient, item.kind)
    return ("one", item.id)


def messages(
    items: Iterable[Item], max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
) -> list[Message]:
    """The messages that carry ``items``, in the order of each group's first item: one per
    group, split when it would exceed ``max_items`` items or about ``max_chars`` characters."""
    groups: dict[tuple[object, ...], list[list[Item]]] = {}
    sizes: dict[tuple[object, ...], int] = {}
    for item in items:
        key = group_key(item)
        chunks = groups.setdefault(key, [[]])
        size = len(item.subject) + len(item.body)
        if chunks[-1] and (len(chunks[-1]) >= max_items or sizes[key] + size > max_chars):
            chunks.append([])
            sizes[key] = 0
        chunks[-1].append(item)
        sizes[key] = sizes.get(key, 0) + size
    return [compose(chunk) for chunks in groups.values() for chunk in chunks]
