"""Reading a file's rows into what the import writes: each row's lead, deal and lead→deal link
(``(key, values)`` for :mod:`models.funnel.upsert`), its rejection, or the setting it needs.

One loop (:func:`read_rows`) does it, called either in the import's own process, straight into
the tables' writers, or in a second process (:class:`Reader`, for big imports): there it
parses while the import's process writes the rows before, and sends each batch's rows, in the
order they were read, through a pipe. Parsing is about half of the floor's time (measured at
1,000,000 leads and their deals: 7.6 s of 16.4 s; 11.1 s in all with the parse beside the
writes), and the database's writing does not release Python enough for a thread to overlap
them (measured: slower than no thread).

The second process is started once per import and reads the files one after the other; its
rows wait in the pipe until the import's process asks for them, so memory holds about a batch
on each side.
"""

from __future__ import annotations

import contextlib
import operator
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import InvalidInput
from models.funnel.files import Progress, _FileRun, _rows
from models.funnel.mapping import FilePart, MappingSpec
from models.funnel.readers import CompiledPart, compile_part
from models.funnel.stages import StageCounts
from models.funnel.values import RowError, SettingNeeded

#: Imports whose files hold at least this many bytes in all are parsed in a second process
#: (about 160,000 leads): below it, starting the process (about half a second: Python and the
#: modules it imports) costs more than the overlap saves.
PARALLEL_BYTES = 16 << 20

#: (key, values) -> None: one row's values for one table's writer
Add = Callable[[str, tuple[Any, ...]], None]
#: (line, reason, cells) -> None
Reject = Callable[[int, str, list[str]], None]


@dataclass
class Sinks:
    """Where a file's rows go: each table's ``add`` (None: the file does not write it), the
    end of each batch (``rows`` read so far) and the rejected rows."""

    lead: Add | None
    deal: Add | None
    link: Add | None
    batch_end: Callable[[int], None]
    reject: Reject


def key_field(compiled: CompiledPart) -> str:
    return "external_id" if any(r.name == "external_id" for r in compiled.readers) else "deal_id"


def deal_has_lead_key(compiled: CompiledPart) -> bool:
    """Whether a deal's row carries its lead's key (and other leads): a deals file naming
    leads, or a file of leads and their deals."""
    roles = compiled.roles
    return roles.deal_key is not None and (
        roles.deal_key == "external_id" or "lead_id" in roles.deal_fields
    )


def read_rows(
    run: _FileRun,
    spec: MappingSpec,
    progress: Progress | None,
    sinks: Sinks,
    batch_size: int,
) -> tuple[int, int]:
    """Read every row of ``run``'s file into ``sinks``; (rows read, leads with no MQL date).
    A row that cannot be read is rejected with its reasons; a value the settings cannot read
    without guessing raises :class:`InvalidInput` naming the line and column."""
    compiled = run.compiled
    roles = compiled.roles
    readers = list(compiled.readers)
    plain = [(r.name, r.index, r.parse) for r in readers if r.parse is not None]
    others = [(r.name, r.read) for r in readers if r.parse is None]
    width = compiled.width
    key_name = key_field(compiled)
    key_column = compiled.part.fields[key_name].column
    file_name = run.path.name
    lead_fields = list(roles.lead_fields)
    deal_fields = [f for f in roles.deal_fields if f != "lead_id"]
    lead_add, deal_add, link_add, reject = sinks.lead, sinks.deal, sinks.link, sinks.reject
    with_lead_key = deal_add is not None and deal_has_lead_key(compiled)
    lead_id_of_deal = roles.deal_key == "external_id"
    # one row is a lead and maybe its deal: a row with none of the deal's fields has no deal
    deal_optional = lead_add is not None
    deal_only = [f for f in deal_fields if f not in ("owner", "team")]
    none_of_deal = len(deal_only)
    deal_values = operator.itemgetter(*deal_only, *deal_only[:1]) if deal_only else None

    lead_get = _getter(lead_fields)
    deal_get = _getter(deal_fields)
    rows = pending = undated = 0
    lookups = compiled.lookups  # (their misses count for the rows kept)
    currency = compiled.currency  # (its currency is the file's when a kept row says it)
    # how the deals' stages are read (won, lost, open), for the preview's table of stages
    stages = StageCounts() if deal_add is not None and "stage" in deal_fields else None
    for line, row, nul in _rows(run, spec, progress):
        rows += 1
        if len(row) != width and (len(row) < width or any(c.strip() for c in row[width:])):
            reject(line, f"the row has {len(row)} fields, the header has {width}", row)
            continue
        if nul:
            columns = [run.header[i] for i, c in enumerate(row) if "\x00" in c and i < width]
            where = f" (column {columns[0]!r})" if columns else ""
            reject(line, f"the row holds a NUL byte{where}: a corrupt or binary line", row)
            continue
        record: dict[str, Any] = {}
        errors: list[str] = []
        try:
            for name, idx, parse in plain:
                record[name] = parse(row[idx])
            for name, read in others:
                record[name] = read(row)
        except SettingNeeded as exc:
            raise _setting_needed(run, compiled, row, line, exc) from None
        except RowError:  # the slow path: every field again, to report all that are wrong
            for reader in readers:
                try:
                    reader.read(row)
                except RowError as exc:
                    errors.append(str(exc))
                except SettingNeeded as exc:
                    raise _setting_needed(run, compiled, row, line, exc) from None
        key = record.get(key_name)
        if not key and not any(e.startswith(f"{key_name}: ") for e in errors):
            errors.insert(0, f"missing id (column {key_column!r})")
        if errors:
            reject(line, "; ".join(errors), row)
            for m in lookups:
                m.dropped()
            if currency is not None:
                currency.dropped()
            continue
        for m in lookups:
            m.kept()
        if currency is not None:
            currency.kept()
        if lead_add is not None:
            lead_add(key, (*lead_get(record), file_name, line))
            if record.get("mql_at") is None:
                undated += 1
        if deal_add is not None and not (
            # a row of a leads-and-deals file with none of the deal's fields has no deal (the
            # getter repeats the first field, so it always gives a tuple: all None = n + 1)
            deal_optional
            and deal_values is not None
            and deal_values(record).count(None) > none_of_deal
        ):
            values = deal_get(record)
            if with_lead_key:
                if lead_id_of_deal:
                    values += (key, None)
                else:
                    ids = record.get("lead_id") or ()
                    values += (ids[0] if ids else None, ";".join(ids[1:]) or None)
            deal_add(key, (*values, True, file_name, line))
            if stages is not None:
                won = record.get("won_at") is not None
                lost = not won and record.get("lost_at") is not None
                stages.add(record.get("stage"), won, lost, line)
        if link_add is not None and record.get("converted_deal_id"):
            link_add(record["converted_deal_id"], (key,))
        pending += 1
        if pending >= batch_size:  # no target holds more than one row per row read
            pending = 0
            sinks.batch_end(rows)
    if currency is not None:
        run.currency = currency.recorded
    run.unmatched = [m.summary() for m in compiled.lookups if m.rows]
    if stages is not None:
        fields = compiled.part.fields
        won, lost = fields.get("won_at"), fields.get("lost_at")
        run.stages = stages.summary(won and won.column, lost and lost.column)
    return rows, undated


def _getter(fields: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of ``fields`` of a record, as a tuple (in C)."""
    if not fields:
        return lambda _record: ()
    if len(fields) == 1:
        name = fields[0]
        return lambda record: (record[name],)
    return operator.itemgetter(*fields)


def _setting_needed(
    run: _FileRun, compiled: CompiledPart, row: list[str], line: int, exc: SettingNeeded
) -> InvalidInput:
    columns = [(c, i) for _n, c, i in compiled.date_columns]
    columns += [(c, i) for i, c in enumerate(compiled.header)]  # (an amount's, say)
    column = next(
        (c for c, i in columns if i < len(row) and row[i].strip() == exc.value.strip()), None
    )
    where = f"line {line}, column {column!r}" if column else f"line {line}"
    return InvalidInput(f"{run.path}: {where}: {exc}; nothing was imported")


# --- the second process -------------------------------------------------------------------------

#: what a file of the import is, for the second process (it compiles the part again: the
#: compiled readers are closures, which do not pickle)
_Job = tuple[str, FilePart, tuple[str, ...], str | None]  # (path, part, header, dates order)


def wanted(paths: list[Path], parallel: bool | None, dialect: str) -> bool:
    """Whether an import of ``paths`` is parsed in a second process. None: when the store is
    SQLite and the files are big. Not on PostgreSQL: measured on this project's 2-core machine
    with the server on it, the second process, the import's and the server's took 18.1 s
    for the files at 1,000,000 leads against 17.7 s without it (three busy processes on two
    cores); with the server on a machine of its own it should gain as SQLite does, not
    measured."""
    if parallel is not None:
        return parallel
    if dialect != "sqlite" or not sys.executable:  # (no Python to start: an embedded one)
        return False
    with contextlib.suppress(OSError):
        return sum(p.stat().st_size for p in paths) >= PARALLEL_BYTES
    return False


class Reader:
    """The second process of an import: it reads its files one after the other, and
    :meth:`read` replays each file's rows into the import's writers, in the order read.

    It is this module run by the same Python (``python -m models.funnel.parse``), told its
    files on its standard input and answering on its standard output: not ``multiprocessing``,
    whose spawned child runs the parent's main script again (a script importing with no
    ``__main__`` guard would start a second import, and wait forever on the first one's lock,
    measured on PostgreSQL)."""

    def __init__(
        self,
        spec: MappingSpec,
        runs: list[tuple[_FileRun, str | None]],
        batch_size: int,
        progress: bool,
    ) -> None:
        jobs: list[_Job] = [
            (str(run.path), run.compiled.part, run.compiled.header, order) for run, order in runs
        ]
        env = dict(os.environ)
        # the modules this process imports, wherever they were found
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - read if the process fails
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                env=env,
            )
        except BaseException:
            self._errors.close()
            raise
        assert self._process.stdin is not None and self._process.stdout is not None
        #: the process's peak resident memory (MB) when it had read the last file so far
        self.peak_mb: float | None = None
        self._in = self._process.stdout
        _widen(self._in.fileno())
        try:
            with self._process.stdin as told:
                pickle.dump((spec, jobs, batch_size, progress), told, pickle.HIGHEST_PROTOCOL)
        except OSError:
            pass  # it stopped at once: reading says why

    @property
    def pid(self) -> int:
        return self._process.pid

    def _events(self) -> Iterator[tuple[Any, ...]]:
        read = self._in.read
        while True:
            head = read(8)
            data = read(int.from_bytes(head, "little")) if len(head) == 8 else b""
            if not data:
                raise RuntimeError(f"the process reading the import's files stopped{self._why()}")
            events = pickle.loads(data)
            yield from events
            if events and events[-1][0] == "end":
                return

    def _why(self) -> str:
        code = self._process.wait()
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace").strip()
        return f" (exit code {code}){': ' + text[-2000:] if text else ''}"

    def read(self, run: _FileRun, progress: Progress | None, sinks: Sinks) -> tuple[int, int]:
        """Replay the next file's rows into ``sinks``; (rows read, leads with no MQL date)."""
        adds = (sinks.lead, sinks.deal, sinks.link)
        for event in self._events():
            kind = event[0]
            if kind == "rows":
                _kind, header, ops, rejects, rows = event
                run.header = header
                for target, key, values in ops:
                    adds[target](key, values)  # type: ignore[misc]
                for line, reason, cells in rejects:
                    sinks.reject(line, reason, cells)
                if rows is not None:
                    sinks.batch_end(rows)
            elif kind == "progress":
                if progress is not None:
                    progress(*event[1:])
            elif kind == "end":
                _kind, header, rows, undated, skipped, facts, self.peak_mb = event
                run.header, run.skipped = header, skipped
                run.currency, run.unmatched, run.stages = facts
                return rows, undated
            elif kind == "invalid":
                raise InvalidInput(event[1])
            else:  # "crash"
                raise RuntimeError(f"reading the import's files failed:\n{event[1]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Stop the process: it has ended once every file was read; an import that stopped
        before that stops it at once."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._in.close()
        self._errors.close()


#: Bytes the pipe from the second process holds (Linux; 1 MiB is the most an unprivileged
#: process may ask for, ``/proc/sys/fs/pipe-max-size``): a batch of 5,000 rows, pickled, is
#: 0.3-0.4 MB. With the default 64 KiB, the second process could not write a batch until the
#: import's had written the one before and read it whole, so any batch slower to parse or to
#: write than the others stalled both (measured at 1,000,000 leads and their deals, the
#: import waited 2.4 s of the leads file's 10.4 s for rows with 64 KiB).
PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    """Make the pipe ``fd`` hold :data:`PIPE_BYTES`, where the system lets it (else as it is)."""
    with contextlib.suppress(OSError, ImportError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # (Linux only)


def _adder(append: Callable[[Any], None], target: int) -> Add:
    return lambda key, values: append((target, key, values))


def _work(send: Callable[[bytes], None], spec: MappingSpec, jobs: list[_Job], batch_size: int,
          progress: bool) -> None:  # fmt: skip
    """The second process: read each file and send its rows, a batch at a time."""
    out: list[tuple[Any, ...]] = []

    def ship() -> None:
        data = pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
        send(len(data).to_bytes(8, "little") + data)
        out.clear()

    try:
        for path, part, header, order in jobs:
            compiled = compile_part(spec, part, list(header), path, dates=order)
            run = _FileRun(path=Path(path), compiled=compiled, sink=None)
            ops: list[tuple[int, str, tuple[Any, ...]]] = []
            rejects: list[tuple[int, str, list[str]]] = []

            def batch_end(rows: int) -> None:
                out.append(("rows", run.header, ops, rejects, rows))  # noqa: B023
                ship()  # (pickled: the lists can be emptied for the next batch)
                ops.clear()  # noqa: B023
                rejects.clear()  # noqa: B023

            roles = compiled.roles
            append = ops.append
            sinks = Sinks(
                lead=_adder(append, 0) if roles.writes_lead else None,
                deal=_adder(append, 1) if roles.deal_key is not None else None,
                link=_adder(append, 2) if roles.link else None,
                batch_end=batch_end,
                reject=lambda line, reason, cells: rejects.append((line, reason, cells)),  # noqa: B023
            )
            tell = (lambda *a: out.append(("progress", *a))) if progress else None
            rows, undated = read_rows(run, spec, tell, sinks, batch_size)
            out.append(("rows", run.header, ops, rejects, None))
            facts = (run.currency, run.unmatched, run.stages)  # (what the parse learned of it)
            out.append(("end", run.header, rows, undated, run.skipped, facts, _peak_mb()))
            ship()
    except InvalidInput as exc:
        out.clear()
        out.append(("invalid", str(exc)))
        ship()
    except Exception:
        out.clear()
        out.append(("crash", traceback.format_exc()))
        ship()


def _peak_mb() -> float | None:
    """This process's peak resident memory (Linux), for the benchmark."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _main() -> None:
    """``python -m models.funnel.parse``: the job pickled on standard input, the rows on
    standard output (which nothing else may write: print() goes to standard error)."""
    # Ctrl-C at a terminal reaches the whole process group: the import's process stops this
    # one, and says why
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    told = pickle.load(sys.stdin.buffer)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(data: bytes) -> None:
        out.write(data)
        out.flush()  # (at once: the import waits for it)

    try:
        _work(send, *told)
    except BrokenPipeError:  # the import stopped: nobody reads any more
        os._exit(0)


if __name__ == "__main__":
    _main()
