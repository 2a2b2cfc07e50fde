"""The limits of imports in the web app and the API (``ALIGNCYCLE_IMPORT_*``), where their
files live, and the settings people choose for a file (dates, separators, encoding), with the
shipped profiles as people see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from aligncycle.web.import_jobs.words import SETTING_LABELS, in_words
from models.db import sqlite_path
from models.errors import InvalidInput
from models.funnel.mapping import MappingSpec, load_profile, profile_names

MB = 1024 * 1024
#: A multipart request carries a little more than its files: boundaries, headers, fields.
MULTIPART_SLACK = 256 * 1024
SETTING_NAMES = (
    "dates",
    "decimal",
    "thousands",
    "timezone",
    "encoding",
    "delimiter",
    "amount_currency",
    "whole_export",
    "won_stages",
    "lost_stages",
)
#: settings that only a mapping with deal stages can take: checked with the mapping
_WITH_THE_MAPPING = ("won_stages", "lost_stages")


class ImportSettings(BaseSettings):
    """``ALIGNCYCLE_IMPORT_*``: limits of imports started in the web app or the API."""

    model_config = SettingsConfigDict(env_prefix="ALIGNCYCLE_IMPORT_", extra="ignore")

    #: The most one upload (all its files together) may weigh, in MB.
    max_upload_mb: float = Field(default=200, gt=0)
    #: From this size (all the files together, in MB) a preview or an import runs in the
    #: background, with a progress bar; below it, in the request.
    background_mb: float = Field(default=5, ge=0)
    #: Uploaded files not imported are removed this long after they were last used.
    keep_hours: float = Field(default=24, gt=0)
    #: A running job whose heartbeat is older than this (seconds) stopped with its process.
    stale_seconds: float = Field(default=120, gt=0)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


def import_settings(app: Any) -> ImportSettings:
    found = getattr(app.state, "import_settings", None)
    if found is None:
        found = app.state.import_settings = ImportSettings()
    return found


def uploads_root(app: Any) -> Path:
    return Path(app.state.settings.data_dir) / "imports"


def rejects_root(app: Any) -> Path:
    """Next to the store, like the CLI's: the embedded store's folder, else the data dir."""
    sqlite = sqlite_path(app.state.store.engine.url)
    base = sqlite.parent if sqlite is not None else Path(app.state.settings.data_dir)
    return base / "rejects"


def size_text(size: int) -> str:
    """A size as people read it: 616 bytes, 512 KB, 1.5 MB."""
    if size >= MB:
        return f"{size / MB:,.1f}".removesuffix(".0") + " MB"
    if size >= 1024:
        return f"{size / 1024:,.0f} KB"
    return f"{size:,} bytes"


# --- the settings people choose --------------------------------------------------------------

#: (value sent by the form, what people read); "" keeps the profile's or mapping's own.
DATES = [
    ("", "As the profile or mapping says"),
    ("auto", "Let each file show it (refused when a file cannot tell)"),
    ("day-first", "Day first: 25/03/2025 or 25.03.2025"),
    ("month-first", "Month first: 03/25/2025"),
    ("iso", "Year first only: 2025-03-25"),
]
DECIMAL = [
    ("", "As the profile or mapping says (a point, unless it says otherwise)"),
    (".", "A point: 1234.56"),
    (",", "A comma: 1234,56"),
]
THOUSANDS = [
    ("", "The other of point and comma"),
    (",", "A comma: 1,234"),
    (".", "A point: 1.234"),
    ("space", "A space: 1 234"),
    ("'", "An apostrophe: 1'234"),
    ("none", "None: 1234"),
]
ENCODING = [
    ("", "As the profile or mapping says (UTF-8, unless it says otherwise)"),
    ("utf-8", "UTF-8"),
    ("latin-1", "Latin-1 (ISO 8859-1, older Western European exports)"),
    ("cp1252", "Windows-1252 (Excel on Windows, Western European)"),
    ("iso-8859-15", "Latin-9 (ISO 8859-15, with the euro sign)"),
    ("cp1250", "Windows-1250 (Central European)"),
    ("utf-16", "UTF-16"),
]
DELIMITER = [
    ("", "As the profile or mapping says (a comma, unless it says otherwise)"),
    (",", "A comma"),
    (";", "A semicolon"),
    ("tab", "A tab"),
    ("|", "A vertical bar"),
]
CURRENCIES = [
    ("", "As the amounts say ($, €, USD…)"),
    ("USD", "US dollars (USD)"),
    ("EUR", "Euros (EUR)"),
    ("GBP", "Pounds sterling (GBP)"),
    ("CAD", "Canadian dollars (CAD)"),
    ("AUD", "Australian dollars (AUD)"),
    ("CHF", "Swiss francs (CHF)"),
    ("JPY", "Japanese yen (JPY)"),
    ("INR", "Indian rupees (INR)"),
    ("BRL", "Brazilian reais (BRL)"),
    ("MXN", "Mexican pesos (MXN)"),
    ("SEK", "Swedish kronor (SEK)"),
    ("PLN", "Polish złoty (PLN)"),
]
WHOLE_EXPORT = [
    ("", "New and updated records: the source's other records stay as they are"),
    ("yes", "The whole export: the source's records they do not list are removed"),
]
#: The form's words for values that are awkward in a form field.
_FORM_VALUES = {"thousands": {"space": " ", "none": ""}, "delimiter": {"tab": "\t"}}
CHOICES = {
    "dates": DATES,
    "decimal": DECIMAL,
    "thousands": THOUSANDS,
    "encoding": ENCODING,
    "delimiter": DELIMITER,
    "amount_currency": CURRENCIES,
    "whole_export": WHOLE_EXPORT,
}
#: What each setting is called on the page.


def form_settings(values: dict[str, str]) -> dict[str, str]:
    """The settings a form chose (its words turned into the mapping's values); an unknown
    choice is refused beside its field."""
    out: dict[str, str] = {}
    for name in SETTING_NAMES:
        raw = values.get(name, "")
        if name in ("timezone", "won_stages", "lost_stages"):
            raw = raw.strip()
        if raw == "":
            continue
        if name in CHOICES and raw not in {v for v, _ in CHOICES[name]}:
            raise InvalidInput(
                f"{SETTING_LABELS[name]}: choose one of the options in the list", field=name
            )
        out[name] = _FORM_VALUES.get(name, {}).get(raw, raw)
    return check_settings(out)


def form_value(name: str, value: str | None) -> str:
    """A stored setting as the form's value (the reverse of :func:`form_settings`); a setting
    not chosen (None) is the form's "as the profile or mapping says"."""
    if value is None:
        return ""
    for shown, stored in _FORM_VALUES.get(name, {}).items():
        if stored == value:
            return shown
    return value


def check_settings(settings: dict[str, str]) -> dict[str, str]:
    """Settings as the API or a form gives them, checked against what a mapping accepts; an
    unknown one is refused naming it in people's words."""
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise InvalidInput(f"unknown setting: {unknown[0]}")
    delimiter = settings.get("delimiter")
    if delimiter is not None and (
        delimiter in '"\r\n' or not (delimiter.isprintable() or delimiter == "\t")
    ):
        raise InvalidInput(
            "Column separator: choose one character that is not a quote or a line break",
            field="delimiter",
        )
    probe = MappingSpec(name="probe", source="probe", fields={"external_id": "id"})
    for name, value in settings.items():
        if name in _WITH_THE_MAPPING:
            continue
        # each setting on its own (whether thousands and decimal clash depends on the
        # mapping's own decimal: checked below when both are chosen, else by the import)
        extra = {"decimal": "," if value == "." else "."} if name == "thousands" else {}
        try:
            probe.with_locale(**{name: value, **extra})
        except InvalidInput as exc:
            raise InvalidInput(in_words(exc.message), field=name) from None
    if settings.get("thousands") and settings.get("thousands") == settings.get("decimal", "."):
        raise InvalidInput(
            "Thousands separator: it is also the decimal separator; choose another",
            field="thousands",
        )
    return dict(settings)


def settings_text(settings: dict[str, str]) -> list[str]:
    """The chosen settings as people read them, e.g. 'How dates are written: Day first ...'."""
    out = []
    for name in SETTING_NAMES:
        if name not in settings:
            continue
        value = settings[name]
        shown = dict(CHOICES.get(name, [])).get(form_value(name, value), value)
        out.append(f"{SETTING_LABELS[name]}: {shown}")
    return out


#: The shipped profiles as people know them (first in the list: the most used).
PROFILE_TITLES = {
    "hubspot": "HubSpot (contacts and deals exports)",
    "salesforce": "Salesforce (leads and opportunities reports)",
    "olist": "Olist (the public marketing funnel data set)",
    "generic": "Any other CRM or spreadsheet (the generic profile)",
}


def profiles() -> list[MappingSpec]:
    names = sorted(
        profile_names(),
        key=lambda n: (list(PROFILE_TITLES).index(n) if n in PROFILE_TITLES else 99, n),
    )
    return [load_profile(n) for n in names]


def profile_title(spec: MappingSpec) -> str:
    return PROFILE_TITLES.get(spec.name) or (spec.description or spec.name).rstrip(".")


def profile_columns(spec: MappingSpec) -> list[tuple[str, str]]:
    """(file of the profile, the columns it needs), as ``aligncycle funnel profiles`` lists."""
    out = []
    for part in spec.parts():
        cols: list[str] = []
        for f in part.fields.values():
            if not f.optional:
                cols += [c for c in (f.column, f.when.column if f.when else None) if c]
        out.append((part.name, ", ".join(dict.fromkeys(cols))))
    return out


# --- words ---------------------------------------------------------------------------------

#: The mapping's field names, as people say them (in messages about a file's columns).
