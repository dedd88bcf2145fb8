"""Schemas as plain values (pyspark.sql.types) and pure functions over them.

Inference follows Auto Loader's `inferColumnTypes`: JSON integers are BIGINT, other numbers
DOUBLE, objects STRUCT, arrays ARRAY. Merging (the table typerules.MERGE) keeps the first-seen type
of a field; the only widening is BIGINT + DOUBLE -> DOUBLE, and a STRING takes any value (as its
JSON text). Null, `[]` and `{}` are never a conflict; fields seen only as those are left out until
a value shows their type. Nothing here touches Spark or storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspark.sql import types as T

from lake_assets.core.fieldpath import ELEMENT, VALUES, FieldPath
from lake_assets.core.typerules import (
    CHILDREN, CLASH, CONTAINERS, DOUBLE, EMPTY, MERGE, SECOND, STRUCT, VALUE_TAG, WIDEN, is_empty, kind_tag, kind_type,
    merge_kinds, settle, type_kind, unknown_kind, value_tag,
)
from lake_assets.errors import LakeError

# Characters Delta (without column mapping) rejects in column names.
INVALID_NAME_CHARS = re.compile(r"[ ,;{}()\n\t=]")


class SchemaError(LakeError, ValueError):
    """A schema hint or schema document that cannot be understood."""


# ---------------------------------------------------------------- inference

class Inferrer:
    """Accumulates the kinds (typerules) of many JSON records in plain Python values (fast), then
    builds the StructType once. `conflicts` counts values whose type did not merge (first seen wins)."""

    def __init__(self):
        self.kind: dict = {}
        self.conflicts = 0

    def absorb(self, record: dict) -> None:
        self.kind = self._merge(self.kind, record)

    def _merge(self, acc, value):
        """`value` merged into the kind `acc` by typerules.MERGE."""
        try:
            second = VALUE_TAG[value.__class__]
        except KeyError:
            second = value_tag(value)
        if second is acc:  # the same scalar kind again (MERGE's diagonal: first), the common case
            return acc
        if acc.__class__ is not dict or second is not STRUCT:  # (struct into struct, the next: CHILDREN)
            rule = MERGE[kind_tag(acc)][second]
            if rule == EMPTY:
                rule = settle(is_empty(value), unknown_kind(acc))
            if rule == SECOND and second in CONTAINERS:
                acc = {} if second is STRUCT else [None]
            elif rule != CHILDREN:
                self.conflicts += rule == CLASH  # also a scalar where a struct or array was seen first
                return second if rule == SECOND else DOUBLE if rule == WIDEN else acc
        if second is STRUCT:
            for k, v in value.items():
                acc[k] = self._merge(acc.get(k), v)
        else:
            for item in value:
                acc[0] = self._merge(acc[0], item)
        return acc

    def result(self) -> T.StructType:
        return kind_type(self.kind)


def merge_types(a: T.DataType, b: T.DataType) -> T.DataType:
    """Merge two inferred types by typerules.MERGE; `a` was seen first and wins a conflict."""
    return kind_type(merge_kinds(type_kind(a), type_kind(b)))


def drop_unknown(t: T.DataType) -> T.DataType | None:
    """Remove fields whose type is still unknown (only nulls / empty arrays seen)."""
    if isinstance(t, T.NullType):
        return None
    if isinstance(t, T.StructType):
        fields = [T.StructField(f.name, k) for f in t.fields if (k := drop_unknown(f.dataType)) is not None]
        return T.StructType(fields) if fields else None
    if isinstance(t, T.ArrayType):
        element = drop_unknown(t.elementType)
        return T.ArrayType(element) if element is not None else None
    return t


# ---------------------------------------------------------------- names

def name_problem(name: str, siblings: list[str], reserved: frozenset[str] = frozenset()) -> str | None:
    """Why a JSON key cannot be a column next to `siblings` (None if it can)."""
    if not name:
        return "empty name"
    if INVALID_NAME_CHARS.search(name):
        return "characters Delta rejects"
    if name.lower() in {r.lower() for r in reserved}:  # the engine resolves names ignoring case
        return "reserved column name"
    lowered = name.lower()
    for other in siblings:
        if other != name and other.lower() == lowered:
            return f"differs only in case from {other!r}"
    return None


# ---------------------------------------------------------------- hints

_ATOMIC = {
    "string": T.StringType, "varchar": T.StringType, "bigint": T.LongType, "long": T.LongType,
    "int": T.IntegerType, "integer": T.IntegerType, "smallint": T.ShortType, "short": T.ShortType,
    "tinyint": T.ByteType, "byte": T.ByteType, "double": T.DoubleType, "float": T.FloatType,
    "real": T.FloatType, "boolean": T.BooleanType, "bool": T.BooleanType, "date": T.DateType,
    "timestamp": T.TimestampType, "timestamp_ltz": T.TimestampType, "binary": T.BinaryType,
}


class _TypeParser:
    """Recursive-descent parser for Spark DDL types (`MAP<STRING, ARRAY<STRUCT<a: INT>>>`)."""

    TOKEN = re.compile(r"\s*(`[^`]*`|[A-Za-z_][A-Za-z0-9_]*|\d+|[<>(),:])")

    def __init__(self, text: str):
        self.text = text
        self.tokens = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = self.TOKEN.match(text, pos)
            if not m:
                raise SchemaError(f"cannot parse type {text!r} at {text[pos:]!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected=None):
        tok = self.peek()
        if tok is None or (expected and tok.lower() != expected):
            raise SchemaError(f"cannot parse type {self.text!r}: expected {expected or 'more'}, got {tok!r}")
        self.i += 1
        return tok

    def parse(self) -> T.DataType:
        t = self.type()
        if self.peek() is not None:
            raise SchemaError(f"cannot parse type {self.text!r}: unexpected {self.peek()!r}")
        return t

    def type(self) -> T.DataType:
        word = self.take().lower()
        if word == "array":
            self.take("<"); element = self.type(); self.take(">")
            return T.ArrayType(element)
        if word == "map":
            self.take("<"); key = self.type(); self.take(","); value = self.type(); self.take(">")
            return T.MapType(key, value)
        if word == "struct":
            self.take("<")
            fields = []
            while self.peek() != ">":
                name = self.take().strip("`")
                if self.peek() == ":":
                    self.take(":")
                fields.append(T.StructField(name, self.type()))
                if self.peek() == ",":
                    self.take(",")
            self.take(">")
            return T.StructType(fields)
        if word in ("decimal", "numeric", "dec"):
            precision, scale = 10, 0
            if self.peek() == "(":
                self.take("("); precision = int(self.take())
                if self.peek() == ",":
                    self.take(","); scale = int(self.take())
                self.take(")")
            return T.DecimalType(precision, scale)
        if word in _ATOMIC:
            return _ATOMIC[word]()
        raise SchemaError(f"unknown type {word!r} in {self.text!r}")


def parse_type(text: str) -> T.DataType:
    return _TypeParser(text).parse()


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_hints(text: str | None) -> list[tuple[list[str], T.DataType]]:
    """Auto Loader `schemaHints`: `"a STRING, b.c DOUBLE, arr.element.x INT, m.value INT"` (names
    as in field paths: `` `a.b` INT `` is the field `a.b`)."""
    hints = []
    for part in _split_top_level(text or ""):
        m = re.match(r"^((?:`(?:[^`]|``)*`|[^\s`])+)\s+(.+)$", part)
        try:
            path = FieldPath.parse(m.group(1)) if m else None
        except ValueError:
            path = None
        if path is None or path.in_array or "" in path.steps:
            raise SchemaError(f"schema hint {part!r} is not '<field path> <TYPE>' "
                              f"(array elements and map values are `element`, `key`, `value`)")
        hints.append((list(path.steps), parse_type(m.group(2))))
    return hints


def _apply_hint(t: T.DataType | None, path: list[str], hint: T.DataType) -> T.DataType:
    if not path:
        return hint
    head, rest = path[0], path[1:]
    if t is None and head == "element":  # an absent field hinted through its elements: an array
        t = T.ArrayType(T.NullType())
    if t is None and head in ("key", "value"):  # ... through its keys or values: a map
        t = T.MapType(T.StringType(), T.StringType())
    if isinstance(t, T.ArrayType) and head == "element":
        return T.ArrayType(_apply_hint(t.elementType, rest, hint))
    if isinstance(t, T.MapType) and head in ("key", "value"):
        key = _apply_hint(t.keyType, rest, hint) if head == "key" else t.keyType
        value = _apply_hint(t.valueType, rest, hint) if head == "value" else t.valueType
        return T.MapType(key, value)
    fields = list(t.fields) if isinstance(t, T.StructType) else []
    for i, f in enumerate(fields):
        if f.name == head:
            fields[i] = T.StructField(head, _apply_hint(f.dataType, rest, hint))
            return T.StructType(fields)
    return T.StructType(fields + [T.StructField(head, _apply_hint(None, rest, hint))])


def apply_hints(schema: T.StructType, hints: list[tuple[list[str], T.DataType]]) -> T.StructType:
    """Hinted paths take the hinted type; hinted fields absent from the data are added."""
    for path, hint in hints:
        schema = _apply_hint(schema, path, hint)
    return schema


# ---------------------------------------------------------------- comparison

def subsumes(target: T.DataType, seen: T.DataType) -> bool:
    """True when every value of inferred type `seen` fits `target` as is (no rescue, no checks)."""
    if isinstance(seen, T.NullType) or target == seen:
        return True
    if isinstance(seen, T.LongType) and isinstance(target, T.DoubleType):
        return True
    if isinstance(seen, T.StructType) and isinstance(target, T.StructType):
        names = {f.name: f.dataType for f in target.fields}
        return all(isinstance(f.dataType, T.NullType) or (f.name in names and subsumes(names[f.name], f.dataType))
                   for f in seen.fields)
    if isinstance(seen, T.ArrayType) and isinstance(target, T.ArrayType):
        return subsumes(target.elementType, seen.elementType)
    return False


@dataclass(frozen=True)
class SchemaDiff:
    added: list[str] = field(default_factory=list)      # field paths with their new type
    removed: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)    # "path: old -> new"

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.retyped)

    def as_dict(self) -> dict:
        return {"added": self.added, "removed": self.removed, "retyped": self.retyped}


def _paths(t: T.DataType, prefix: FieldPath = FieldPath()) -> dict[FieldPath, T.DataType]:
    out = {}
    if isinstance(t, T.StructType):
        for f in t.fields:
            path = prefix.child(f.name)
            out[path] = f.dataType
            out.update(_paths(f.dataType, path))
    elif isinstance(t, T.ArrayType):
        out.update(_paths(t.elementType, prefix.child(ELEMENT)))
    elif isinstance(t, T.MapType):
        out.update(_paths(t.valueType, prefix.child(VALUES)))
    return out


def _leafish(t: T.DataType) -> str:
    """Type name for diffs: containers by kind only, so a nested addition is not also a retype."""
    if isinstance(t, T.StructType):
        return "struct"
    if isinstance(t, T.ArrayType):
        return "array<" + _leafish(t.elementType) + ">"
    if isinstance(t, T.MapType):
        return f"map<{_leafish(t.keyType)},{_leafish(t.valueType)}>"
    return t.simpleString()


def diff(old: T.StructType, new: T.StructType) -> SchemaDiff:
    """Added / removed / retyped field paths (FieldPath.plain: `a.b`, `arr[].x`) from `old` to `new`."""
    a, b = _paths(old), _paths(new)
    added = [f"{p.plain()} {b[p].simpleString()}" for p in b if p not in a and not _under_any(p, b, a)]
    removed = [p.plain() for p in a if p not in b and not _under_any(p, a, b)]
    retyped = [f"{p.plain()}: {_leafish(a[p])} -> {_leafish(b[p])}" for p in a
               if p in b and _leafish(a[p]) != _leafish(b[p])]
    return SchemaDiff(added, removed, retyped)


def _under_any(path: FieldPath, mine: dict, other: dict) -> bool:
    """Whether an ancestor of `path` is itself missing from `other` (so only the ancestor is reported)."""
    return any(path.under(anc) and anc not in other for anc in mine)


# ---------------------------------------------------------------- evolution

@dataclass(frozen=True)
class Evolution:
    schema: T.StructType            # the schema to write this batch with
    new_fields: list[str]           # paths in the data that the accepted schema lacks
    rejected: dict[str, str]        # path -> why it cannot become a column (rescued instead)


def evolve(current: T.StructType, seen: T.StructType, mode: str,
           hints: list[tuple[list[str], T.DataType]] = (), reserved: frozenset[str] = frozenset()
           ) -> Evolution:
    """Decide the batch schema from the accepted schema and what the batch contains.

    Existing column types never change (a conflicting value is rescued); new valid fields are
    appended at the end of their struct. Only `addNewColumns` puts them in the returned schema.
    """
    new_fields: list[str] = []
    rejected: dict[str, str] = {}
    grown = _grow(current, seen, FieldPath(), new_fields, rejected, reserved)
    grown = apply_hints(grown, hints)
    return Evolution(grown if mode == "addNewColumns" else apply_hints(current, hints),
                     new_fields, rejected)


def _grow(cur: T.DataType | None, seen: T.DataType, path: FieldPath, new_fields: list, rejected: dict,
          reserved: frozenset[str]) -> T.DataType | None:
    if isinstance(seen, T.StructType) and (cur is None or isinstance(cur, T.StructType)):
        fields = list(cur.fields) if cur is not None else []
        by_name = {f.name: i for i, f in enumerate(fields)}
        for f in seen.fields:
            sub = path.child(f.name)
            if f.name in by_name:
                i = by_name[f.name]
                fields[i] = T.StructField(f.name, _grow(fields[i].dataType, f.dataType, sub, new_fields,
                                                        rejected, frozenset()))
                continue
            problem = name_problem(f.name, [x.name for x in fields], frozenset() if path.steps else reserved)
            if problem:
                rejected[sub.plain()] = problem
                continue
            added = drop_unknown(f.dataType)
            if added is None:
                continue
            added = _grow(None, added, sub, [], rejected, frozenset())
            if added is None:
                continue
            new_fields.append(f"{sub.plain()} {added.simpleString()}")
            by_name[f.name] = len(fields)
            fields.append(T.StructField(f.name, added))
        return T.StructType(fields) if (fields or cur is not None) else None
    if isinstance(seen, T.ArrayType) and (cur is None or isinstance(cur, T.ArrayType)):
        element = _grow(cur.elementType if cur is not None else None, seen.elementType, path.child(ELEMENT),
                        new_fields, rejected, frozenset())
        return T.ArrayType(element) if element is not None else cur
    if cur is None:
        return drop_unknown(seen)
    return cur  # existing types never change; mismatching values are rescued per record
