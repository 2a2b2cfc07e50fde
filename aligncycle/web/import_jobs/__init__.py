"""Import in the browser and through the API: what the page and the API share (the pages and
the API use this package's names; its modules: ``settings``, ``words``, ``uploads``,
``progress``, ``runner``).

- **Uploads** are saved to a folder of their own under the data dir (``<data dir>/imports/
  <random name>/``, mode 0700), never reachable by URL, bounded in size
  (``ALIGNCYCLE_IMPORT_MAX_UPLOAD_MB``, 200 by default: a request announcing more is refused
  before it is read), and removed after the import, when the person discards them, or
  ``ALIGNCYCLE_IMPORT_KEEP_HOURS`` (24) after they were last used.
- **Running.** A preview and an import run in the request when the files are small, else in a
  background thread of the process that received the request
  (``ALIGNCYCLE_IMPORT_BACKGROUND_MB``, 5 by default). One import or preview runs at a time
  per data dir (a file lock: every worker process of one machine takes turns; SQLite has one
  writer anyway). The job's state lives in the store (:class:`ImportJob`), written in short
  transactions of their own; the percent of bytes read (then the step of the work after the
  files: linking, the data-quality flags, summing up the numbers) lives in ``progress.json``
  beside the uploaded files, written atomically: SQLite lets one connection write at a time,
  and the import holds that for its whole transaction, so progress written to the store would
  wait for the import itself. Any worker reads both, since the uploaded files are already in
  the shared data dir. A heartbeat in that file tells a running job from one whose process
  stopped (then nothing was imported: the import is one transaction).
- **After an import**, what the CLI does happens too: the rejects files are published (in a
  folder per import, ``<rejects>/import-<id>/``, next to the store like the CLI's), then
  :func:`models.phases.numbers.record_numbers_after_import` records the KPI gaps of the cycles
  in Identify, in its own unit of work, as ``aligncycle funnel import`` does.
- **Words.** The importer's messages name the command line's options (``--dates``,
  ``--encoding``) and its fields (``mql_at``); :func:`in_words` names the page's settings and
  the file's columns instead, and never shows a server path.
"""

from aligncycle.web.import_jobs.progress import (
    ProgressFile,
    progress_of,
)
from aligncycle.web.import_jobs.runner import (
    COLUMNS_MAPPING,
    NOT_HERE,
    confirm,
    create,
    create_to_match,
    discard,
    file_headers,
    fresh,
    keep_settings,
    match_columns,
    matched_before,
    preview_again,
    rejects_path,
    sweep,
)
from aligncycle.web.import_jobs.settings import (
    CHOICES,
    SETTING_NAMES,
    ImportSettings,
    form_settings,
    form_value,
    import_settings,
    profile_columns,
    profile_title,
    profiles,
    rejects_root,
    settings_text,
    size_text,
    uploads_root,
)
from aligncycle.web.import_jobs.uploads import (
    UploadRefused,
    UploadRoute,
)
from aligncycle.web.import_jobs.words import (
    DEAL_HEADINGS,
    LEAD_HEADINGS,
    SETTING_LABELS,
    STATES,
    flag_groups,
    plural,
    removed_sentences,
    rows_sentence,
    sample_table,
    totals,
    unfound_sentence,
)

__all__ = [
    "CHOICES",
    "COLUMNS_MAPPING",
    "DEAL_HEADINGS",
    "ImportSettings",
    "LEAD_HEADINGS",
    "NOT_HERE",
    "ProgressFile",
    "SETTING_LABELS",
    "SETTING_NAMES",
    "STATES",
    "UploadRefused",
    "UploadRoute",
    "confirm",
    "create",
    "create_to_match",
    "discard",
    "file_headers",
    "flag_groups",
    "form_settings",
    "form_value",
    "fresh",
    "import_settings",
    "keep_settings",
    "match_columns",
    "matched_before",
    "plural",
    "preview_again",
    "profile_columns",
    "profile_title",
    "profiles",
    "progress_of",
    "rejects_path",
    "removed_sentences",
    "unfound_sentence",
    "rows_sentence",
    "rejects_root",
    "sample_table",
    "settings_text",
    "size_text",
    "sweep",
    "totals",
    "uploads_root",
]
