"""Cleaning the landing after commit (Auto Loader's `cleanSource`): committed files older than the
retention are moved under `archive_to` (same key below the source path) or deleted; and the
archive listed again for `lake reprocess --from-archive`, which reads the archived copies in place.

Exactly once across the move: a file is moved only once the ledger says committed for the very
version listed, and the ledger keeps the landing URI as the file's identity, so rows keep their
`_source_file` and a reprocess from the archive replaces them instead of adding to them. A crash
between commit and move (or in the middle of a move: copied, not yet deleted) leaves a committed
file in the landing, which no run ingests again and the next run's cleaning moves."""

from __future__ import annotations

import datetime as dt

from lake_assets import storage
from lake_assets.core.ledger import COMMITTED, Entry
from lake_assets.core.partitions import landing_date
from lake_assets.core.selection import Selection


def archive_root(landing: str, source) -> str:
    """`archive_to` as a URI: as written when it has a scheme or is absolute, else under landing."""
    to = source.archive_to
    return to.rstrip("/") if "://" in to or to.startswith("/") else storage.join(landing, to)


def archived_uri(landing: str, source, uri: str) -> str:
    selection = Selection.of(landing, source)
    return storage.join(archive_root(landing, source), uri[len(selection.prefix):])


def clean(landing: str, source, listed: list[tuple[storage.FileInfo, str]], entries: dict[str, Entry],
          now: dt.datetime) -> int:
    """Move or delete the listed files whose listed version the ledger committed at least the
    retention ago; the number cleaned."""
    cutoff = now - dt.timedelta(hours=source.clean_source_retention_hours)
    done = 0
    for f, _ in listed:
        entry = entries.get(f.uri)
        if entry is None or entry.status != COMMITTED or entry.etag != f.etag or entry.committed_at is None \
                or entry.committed_at > cutoff:
            continue
        if source.clean_source == "move":
            storage.move(f.uri, archived_uri(landing, source, f.uri))
        else:
            storage.delete(f.uri)
        done += 1
    return done


def archived_listing(landing: str, source, days: set[str] | None, entries: dict[str, Entry]
                     ) -> tuple[list[tuple[storage.FileInfo, str]], dict[str, str]]:
    """The archived files of `days` (None: all) as the landing files they were (their landing URI,
    the ledger's landing date), and {landing URI: archived URI} to read them from."""
    selection = Selection.of(landing, source)
    root = archive_root(landing, source)
    listed, reads = [], {}
    for f in storage.list_files(root):
        uri = storage.join(selection.prefix, f.uri[len(root):])
        if not selection.selects(uri):
            continue
        entry = entries.get(uri)
        day = entry.landing_date if entry else landing_date(f.uri[len(root):], f.last_modified).isoformat()
        if days is None or day in days:
            listed.append((storage.FileInfo(uri, f.size, f.etag, f.last_modified), day))
            reads[uri] = f.uri
    return listed, reads
