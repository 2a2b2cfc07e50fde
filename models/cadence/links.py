"""Where a notification sends its reader: the web app's page to act on.

With ``ALIGNCYCLE_BASE_URL`` set (the address people reach the web app at), a message ends
with the page's full address; without it, with the page's name, so a message never tells
anyone to run a command.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.config import StoreSettings


@dataclass(frozen=True)
class Links:
    base_url: str | None = None

    @classmethod
    def from_settings(cls) -> Links:
        """The ``base_url`` of this process's settings (read once per planning run)."""
        return cls(StoreSettings().base_url)

    def url(self, path: str) -> str | None:
        if not self.base_url:
            return None
        return self.base_url.rstrip("/") + path

    def act(self, path: str, page: str, what: str) -> str:
        """A closing line: "What: URL", or "What: on the PAGE page of aligncycle's web app"."""
        url = self.url(path)
        return f"\n\n{what}: {url}" if url else f"\n\n{what}: the {page} page of the web app."

    # The pages each kind of message points at.

    @staticmethod
    def my_work() -> tuple[str, str]:
        return "/my", "My work"

    @staticmethod
    def cycle(cycle_id: int) -> tuple[str, str]:
        return f"/cycles/{cycle_id}", "cycle's"

    @staticmethod
    def actions(cycle_id: int) -> tuple[str, str]:
        return f"/cycles/{cycle_id}/actions", "cycle's Action items"

    @staticmethod
    def recap(cycle_id: int) -> tuple[str, str]:
        return f"/cycles/{cycle_id}/recap", "cycle's Recap"
