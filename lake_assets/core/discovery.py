"""Finding newly landed files cheaply, for sensors.

A tick lists only the recent day folders: when every key under the source prefix carries its
date at the same place (`…/2026/11/20/…`, `…/dt=2026-11-20/…`), S3's `StartAfter` jumps straight
to the first folder of the look-back window, so a tick costs in proportion to the recent objects,
not to the whole history. Keys seen in the window are remembered (per day, by digest) in the
cursor, so a file is never skipped because of its name or its timestamp. A periodic sweep lists
everything and compares it with the ingestion ledger, catching late files in old folders and lost
notifications (Auto Loader's `backfillInterval`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from lake_assets import storage
from lake_assets.core.partitions import landing_date

_DATE_IN_KEY = [
    (re.compile(r"^(.*?)(\d{4})/(\d{2})/(\d{2})/"), "%Y/%m/%d"),
    (re.compile(r"^(.*?(?:dt|date|ds|day|landing_date)=)(\d{4})-(\d{2})-(\d{2})/"), "%Y-%m-%d"),
    (re.compile(r"^(.*?)(\d{4})-(\d{2})-(\d{2})/"), "%Y-%m-%d"),
]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class Cursor:
    """What a sensor remembers between ticks (stored as the Dagster cursor)."""
    layout: list[str] | None = None                         # [folder text before the date, strftime format]
    known: dict[str, dict[str, str]] = field(default_factory=dict)  # day -> {key digest: etag digest}
    last_sweep: float | None = None                         # epoch seconds
    pending_deletes: list[str] = field(default_factory=list)  # SQS receipt handles to delete next tick
    early: dict[str, dict[str, str]] = field(default_factory=dict)  # as `known`, for days after today

    def dumps(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return cls()  # an unreadable cursor only costs a sweep


def detect_layout(prefix: str, files: list[storage.FileInfo]) -> list[str] | None:
    """The one place every key keeps its date, if there is one."""
    found = None
    for f in files:
        rel = f.uri[len(prefix):].lstrip("/")
        for pattern, fmt in _DATE_IN_KEY:
            m = pattern.match(rel)
            if m:
                layout = [m.group(1), fmt]
                break
        else:
            return None
        if found not in (None, layout):
            return None
        found = layout
    return found


HEAD_KEYS = 1000   # one S3 page: enough keys to see whether the date layout holds


def list_days(prefix: str, days: set[str]) -> tuple[list[storage.FileInfo], bool]:
    """The files under `prefix` that can land on `days`, and whether only those days' folders were
    listed. When the first page of keys and every key sorting after the date folders follow one date
    layout (detect_layout), only the folders of `days` are listed, so a run costs in proportion to its
    days, not the history; otherwise (or for a small prefix) everything is listed. A key outside the
    layout between date folders is not seen here; the sensor's sweep lists everything."""
    head = list(itertools.islice(storage.list_files(prefix), HEAD_KEYS))
    layout = detect_layout(prefix, head)
    if len(head) < HEAD_KEYS:
        return head, layout is not None
    if layout is not None:
        files, tail = _day_folders(prefix, layout, days)
        if tail is None:   # not seen on the way: the first key past every date folder (':' sorts after '9')
            tail = list(itertools.islice(storage.list_files(prefix, start_after=_past_dates(prefix, layout)), 1))
        if not tail or detect_layout(prefix, tail) == layout:
            return files, True
    return head + list(storage.list_files(prefix, start_after=head[-1].uri)), False


def _past_dates(prefix: str, layout: list[str]) -> str:
    return storage.join(prefix, layout[0] + ":")


def _day_folders(prefix: str, layout: list[str], days: set[str]
                 ) -> tuple[list[storage.FileInfo], list[storage.FileInfo] | None]:
    """The files in the folders of `days`, one ranged listing per run of consecutive days (StartAfter
    the run's first folder, stopping past its last), and the first key past every date folder when the
    last listing ran into it ([] when nothing follows; None when it stopped at a later date folder)."""
    runs: list[list[dt.date]] = []
    for day in sorted(dt.date.fromisoformat(d) for d in days):
        if runs and day - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    past, files, tail = _past_dates(prefix, layout), [], None
    for run in runs:
        folders = tuple(storage.join(prefix, layout[0] + d.strftime(layout[1])) + "/" for d in run)
        tail = []
        for f in storage.list_files(prefix, start_after=folders[0][:-1]):
            if f.uri.startswith(folders):
                files.append(f)
            elif f.uri > folders[-1]:
                tail = [f] if f.uri > past else None
                break
    return files, tail


@dataclass
class Discovery:
    new: dict[str, list[storage.FileInfo]]   # landing day -> files not seen before (or changed)
    cursor: Cursor
    swept: bool
    listed: int
    early: dict[str, list[storage.FileInfo]] = field(default_factory=dict)  # new in folders dated after today


def discover(prefix: str, cursor: Cursor, now: dt.datetime, *, lookback_days: int = 2,
             sweep_every: dt.timedelta = dt.timedelta(hours=24),
             ingested: Callable[[], dict[str, str]] | None = None,
             selects: Callable[[str], bool] | None = None) -> Discovery:
    """New or changed files under `prefix` since the cursor; `ingested()` gives {uri: etag} of
    committed files and is read only on a sweep; `selects(uri)` says which objects are data
    (selection.Selection, the same choice bronze makes)."""
    today = now.astimezone(dt.timezone.utc).date()
    window = {(today - dt.timedelta(days=i)).isoformat() for i in range(lookback_days)}
    sweep = cursor.layout is None or cursor.last_sweep is None or \
        now.timestamp() - cursor.last_sweep >= sweep_every.total_seconds()
    if sweep:
        files = [f for f in storage.list_files(prefix) if selects is None or selects(f.uri)]
        layout = detect_layout(prefix, files)
    else:
        layout = cursor.layout
        start = (today - dt.timedelta(days=lookback_days - 1)).strftime(layout[1])
        # StartAfter is exclusive and lexical: "<prefix>/<before>2026/11/20" precedes every key of that day.
        files = [f for f in storage.list_files(prefix, start_after=storage.join(prefix, layout[0] + start))
                 if selects is None or selects(f.uri)]

    new: dict[str, list[storage.FileInfo]] = {}
    early: dict[str, list[storage.FileInfo]] = {}
    known: dict[str, dict[str, str]] = {day: dict(keys) for day, keys in cursor.known.items() if day in window}
    # A file dated after today has no partition yet: it is reported early once and new on the tick its
    # day has started, so `known` holds only files that could be requested.
    ahead = {day: dict(keys) for day, keys in cursor.early.items() if day > today.isoformat()}
    done = ingested() if sweep and ingested else {}
    for f in files:
        day = landing_date(f.uri[len(prefix):], f.last_modified).isoformat()
        key, etag = _digest(f.uri), _digest(f.etag)
        seen = ahead if day > today.isoformat() else known
        remembered = seen.get(day, {}).get(key)
        if remembered != etag and (seen is ahead or not sweep or done.get(f.uri) != f.etag):
            (early if seen is ahead else new).setdefault(day, []).append(f)
        if day in window or seen is ahead:
            seen.setdefault(day, {})[key] = etag
    out = Cursor(layout if layout else None, known, now.timestamp() if sweep else cursor.last_sweep,
                 cursor.pending_deletes, ahead)
    if sweep and layout is None:
        out.last_sweep = None  # no date layout: every tick is a full listing
        out.layout = None
    return Discovery(new, out, sweep, len(files), early)


def run_key(source: str, day: str, files: list[storage.FileInfo]) -> str:
    """Stable per set of (file, etag): the same files never start two runs."""
    digest = hashlib.sha1("\n".join(sorted(f"{f.uri}@{f.etag}" for f in files)).encode()).hexdigest()[:16]
    return f"{source}:{day}:{digest}"


def s3_event_records(message_body: str) -> list[tuple[str, str, str | None]]:
    """(bucket, key, etag) of the object-created records in an S3 event notification body
    (directly from S3, or wrapped by SNS); test events and other records give nothing."""
    try:
        body = json.loads(message_body)
    except ValueError:
        return []
    if isinstance(body, dict) and "Message" in body and "Records" not in body:  # SNS envelope
        return s3_event_records(body["Message"])
    out = []
    for record in body.get("Records", []) if isinstance(body, dict) else []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3", {})
        out.append((s3.get("bucket", {}).get("name"), unquote_plus(s3.get("object", {}).get("key", "")),
                    s3.get("object", {}).get("eTag")))
    return out
