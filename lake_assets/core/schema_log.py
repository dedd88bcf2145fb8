"""The schema log of a source: numbered versions (0, 1, 2, …) under `_schemas/`, like Auto
Loader's, each a full schema with the time, the files that introduced the change and the diff.
A `pending` document holds a schema that `failOnNewColumns` refused until it is accepted."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from pyspark.sql import types as T

from lake_assets import storage
from lake_assets.core.schema import diff
from lake_assets.errors import LakeError


class SchemaLogError(LakeError, LookupError):
    """Nothing to accept yet, or the log changed under an accept."""


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    schema: T.StructType
    created_at: str
    reason: str
    files: list[str] = field(default_factory=list)
    changes: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"version": self.version, "schema": self.schema.jsonValue(), "created_at": self.created_at,
                           "reason": self.reason, "files": self.files, "changes": self.changes}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "SchemaVersion":
        doc = json.loads(data)
        return cls(doc["version"], T.StructType.fromJson(doc["schema"]), doc["created_at"], doc["reason"],
                   doc.get("files", []), doc.get("changes", {}))


class SchemaLog:
    def __init__(self, uri: str):
        self.uri = uri

    def _version_uri(self, n: int) -> str:
        return storage.join(self.uri, f"{n:06d}.json")

    def _version_files(self) -> list[str]:
        try:
            return sorted(f.uri for f in storage.list_files(self.uri) if f.uri.rsplit("/", 1)[-1][:6].isdigit())
        except storage.StorageError:
            return []

    def versions(self) -> list[SchemaVersion]:
        return [SchemaVersion.from_json(storage.read_bytes(uri)) for uri in self._version_files()]

    def current(self) -> SchemaVersion | None:
        """The latest version (reads only that one document)."""
        files = self._version_files()
        return SchemaVersion.from_json(storage.read_bytes(files[-1])) if files else None

    def record(self, schema: T.StructType, reason: str, files: list[str]) -> SchemaVersion | None:
        """Append a version if `schema` differs from the current one; None if another writer
        added a version first (the caller re-plans against it)."""
        current = self.current()
        if current is not None and current.schema == schema:
            return current
        number = current.version + 1 if current else 0
        version = SchemaVersion(number, schema, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                reason, sorted(files)[:100],
                                diff(current.schema if current else T.StructType([]), schema).as_dict())
        if not storage.write_bytes(self._version_uri(number), version.to_json(), only_if_new=True):
            return None
        return version

    # -- failOnNewColumns
    @property
    def _pending_uri(self) -> str:
        return storage.join(self.uri, "pending.json")

    def set_pending(self, schema: T.StructType, files: list[str], new_fields: list[str]) -> None:
        doc = SchemaVersion(-1, schema, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            "pending: " + ", ".join(new_fields), sorted(files)[:100], {"added": new_fields})
        storage.write_bytes(self._pending_uri, doc.to_json())

    def pending(self) -> SchemaVersion | None:
        if not storage.exists(self._pending_uri):
            return None
        return SchemaVersion.from_json(storage.read_bytes(self._pending_uri))

    def accept_pending(self) -> SchemaVersion:
        pending = self.pending()
        if pending is None:
            raise SchemaLogError("no pending schema to accept")
        version = self.record(pending.schema, "accepted: " + pending.reason.removeprefix("pending: "), pending.files)
        if version is None:
            raise SchemaLogError("the schema log changed while accepting; run the command again")
        storage.delete(self._pending_uri)
        return version

    # -- the accepted baseline the drift check compares against
    @property
    def _accepted_uri(self) -> str:
        return storage.join(self.uri, "accepted.json")

    def accepted(self) -> SchemaVersion | None:
        if not storage.exists(self._accepted_uri):
            return None
        return SchemaVersion.from_json(storage.read_bytes(self._accepted_uri))

    def accept(self) -> SchemaVersion:
        """Accept the pending schema if there is one, then pin the current version as accepted."""
        if self.pending() is not None:
            self.accept_pending()
        current = self.current()
        if current is None:
            raise SchemaLogError("no schema yet: nothing has been ingested")
        storage.write_bytes(self._accepted_uri, current.to_json())
        return current

    def accept_change(self, schema: T.StructType, reason: str) -> SchemaVersion:
        """Pin `schema` — the accepted schema plus one reviewed change (a promotion) — as accepted,
        at the current version, leaving any other drift unaccepted."""
        current = self.current()
        if current is None:
            raise SchemaLogError("no schema yet: nothing has been ingested")
        doc = SchemaVersion(current.version, schema, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            reason)
        storage.write_bytes(self._accepted_uri, doc.to_json())
        return doc

    def clear(self) -> int:
        """Remove every version (reset); returns how many there were."""
        versions = self.versions()
        for v in versions:
            storage.delete(self._version_uri(v.version))
        storage.delete(self._pending_uri)
        storage.delete(self._accepted_uri)
        return len(versions)
