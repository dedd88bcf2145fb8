"""Which landing objects are a source's data: the one function bronze and the sensors ask.

`path` may hold globs (`AWSDynamoDB/*/data/`): the listing starts at its literal part and keys
must match the rest. `include` / `exclude` are globs on the key relative to the source path (a
pattern without `/` matches the file name, like Auto Loader's pathGlobFilter); `*` stays within a
folder, `**` crosses folders, `{a,b}` is either. Well-known non-data objects (DEFAULT_EXCLUDE) are
skipped too, unless `skip_default_excludes: true`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Markers, manifests and checksums that producers write next to data (Spark/Hadoop _SUCCESS and
# _started, DynamoDB export manifests and checksums, CloudTrail digest files).
DEFAULT_EXCLUDE = ("_SUCCESS", "_started*", "_committed*", "manifest-summary.json", "manifest-files.json",
                   "*.checksum", "*-Digest*", "*.md5")
_GLOB_CHARS = re.compile(r"[*?\[{]")


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append("(?:" + "|".join(re.escape(p) for p in pattern[i + 1:end].split(",")) + ")")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class Selection:
    prefix: str                   # where listing starts: landing + the literal part of path
    folders: str                  # the rest of path, a glob on the folders below prefix ("" if none)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, landing: str, source) -> "Selection":
        from lake_assets import storage

        path = source.path
        glob = _GLOB_CHARS.search(path)
        literal, folders = (path, "") if glob is None else (path[:path.rfind("/", 0, glob.start()) + 1],
                                                            path[path.rfind("/", 0, glob.start()) + 1:])
        exclude = tuple(source.exclude) + (() if source.skip_default_excludes else DEFAULT_EXCLUDE)
        return cls(storage.join(landing, literal) if literal else landing.rstrip("/"), folders.strip("/"),
                   tuple(source.include), exclude)

    @property
    def pattern(self) -> str:
        return self.prefix + ("/" + self.folders if self.folders else "")

    def relative(self, uri: str) -> str | None:
        """The key below the source path, or None when the folders of a glob path do not match."""
        rel = uri[len(self.prefix):].lstrip("/")
        if not self.folders:
            return rel
        m = glob_regex(self.folders + "/").match(rel)
        return rel[m.end():] if m else None

    def selects(self, uri: str) -> bool:
        rel = self.relative(uri)
        if rel is None:
            return False
        name = rel.rsplit("/", 1)[-1]

        def matches(pattern: str) -> bool:
            return glob_regex(pattern).fullmatch(rel if "/" in pattern else name) is not None

        if self.include and not any(matches(p) for p in self.include):
            return False
        return not any(matches(p) for p in self.exclude)

    def split(self, files: list) -> tuple[list, int]:
        """(the selected files, how many other objects the listing held)."""
        chosen = [f for f in files if self.selects(f.uri)]
        return chosen, len(files) - len(chosen)


def partition_values(uri: str, names: list[str]) -> dict[str, str]:
    """The Hive-style `name=value` folders of an object's key for `names` (Auto Loader's
    partitionColumns); the folder nearest the file wins a repeated name."""
    from urllib.parse import unquote

    out = {}
    for folder in uri.split("://", 1)[-1].split("/")[:-1]:
        name, eq, value = folder.partition("=")
        if eq and name in names:
            out[name] = unquote(value)
    return out
