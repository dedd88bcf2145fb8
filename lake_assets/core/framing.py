"""How a landing file's bytes become records. Plain NDJSON (one object per line) is read as it is;
every other framing is first normalised to NDJSON bytes with one record per line, so the pyarrow
scan, the walk and the quarantine read it like any NDJSON file:

- `multiline`: the file holds JSON documents (pretty-printed, or one top-level array whose
  elements are the records); concatenated values (`{…}{…}`, Firehose) are split the same way, and
  an NDJSON file whose lines do not parse is tried as concatenated values (detected, not configured);
- `records_path` (`Records`): each element of that array of each document is one record;
- `dynamodb`: DynamoDB JSON (`{"Item": …}` export lines, stream `NewImage`) unmarshalled; B and BS
  values stay their base64 text, and the paths where they were seen first (`Framed.binary`) make
  the scan infer BINARY there (with_binary), so the typed pass decodes them (from_base64).

A leading UTF-8 BOM is dropped and CR-only line endings read as line ends, as Spark reads them.
Records of a normalised file are numbered by position (`_record`, 0-based; `_line` = `_record` + 1),
since they have no line of their own. Pure functions over bytes."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import orjson

from lake_assets.core.fieldpath import ELEMENT, FieldPath
from lake_assets.errors import LakeError

BOM = b"\xef\xbb\xbf"
BAD = b"!"  # stands for a record in Framed.errors: parse_line rejects it, the quarantine shows the raw text
_LONE_CR = re.compile(rb"\r(?!\n)")
_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class Framing:
    """A source's framing options (config: multiline, records_path, format)."""
    multiline: bool = False
    records_path: tuple[str, ...] = ()
    dynamodb: bool = False

    @property
    def plain(self) -> bool:
        return not (self.multiline or self.records_path or self.dynamodb)

    def per_record(self, split: bool = False) -> bool:
        """Whether frame() numbers the records by position (else they keep the file's lines)."""
        return self.multiline or bool(self.records_path) or split

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, value: dict | None) -> "Framing":
        value = value or {}
        return cls(bool(value.get("multiline")), tuple(value.get("records_path") or ()), bool(value.get("dynamodb")))


@dataclass
class Framed:
    data: bytes                 # NDJSON: each non-blank line one record (or a malformed one)
    per_record: bool            # lines are records by position, not the file's own lines
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)  # line -> (raw text, why) of BAD lines
    binary: set[FieldPath] = field(default_factory=set)  # DynamoDB: paths whose first string was B


def frame(data: bytes, framing: Framing, split: bool = False, cut: bool = False) -> Framed:
    """`data` as NDJSON records. `split`: read a plain NDJSON file as concatenated values (the
    scan sets it when the lines do not parse but the values do: see concatenated). `cut`: the
    data is what a damaged gzip held before the damage (on_corrupt: salvage; see _uncut)."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    if b"\r" in data and _LONE_CR.search(data):
        data = _LONE_CR.sub(b"\n", data)
    if framing.plain and not split:
        return Framed(data, False)
    if not (framing.multiline or framing.records_path or split) and framing.dynamodb:
        return _line_by_line(data, framing)
    docs = _documents(data, raw_objects=not (framing.records_path or framing.dynamodb))
    if cut:
        docs = _uncut(docs, data, len(framing.records_path))
    if docs is None:
        return Framed(BAD, True, {1: (data.decode("utf-8", "replace"), "not JSON (or not UTF-8)")})
    out, kinds = Framed(b"", True), {}
    lines: list[bytes] = []
    dumps = dumps_non_finite if (b"NaN" in data or b"Infinity" in data) else _dumps
    for doc in docs:
        if isinstance(doc, bytes):  # an object on one line, as it is (the scan parses it)
            lines.append(doc)
            continue
        if isinstance(doc, _Unparsed):
            lines.append(BAD)
            out.errors[len(lines)] = (doc.text, doc.why)
            continue
        for record in _records(doc, framing, kinds):
            if isinstance(record, _Unparsed):
                lines.append(BAD)
                out.errors[len(lines)] = (record.text, record.why)
            else:
                lines.append(dumps(record))
    out.data = b"\n".join(lines)
    out.binary = _binary_paths(kinds)
    return out


def concatenated(data: bytes, framing: Framing = Framing(), cut: bool = False) -> Framed | None:
    """A plain NDJSON file whose lines did not all parse, as concatenated JSON values (Firehose:
    `{…}{…}` with or without whitespace) when the whole file parses that way, or as one top-level
    array of objects (as Spark reads it); else None (a line holding `[1, 2]` stays malformed).
    `cut`: the file is what a damaged gzip gave before the damage (on_corrupt: salvage), so its
    last value may be cut: that one is a malformed record, the values before it still split."""
    try:
        whole = orjson.loads(data[len(BOM):] if data.startswith(BOM) else data)
        if isinstance(whole, list) and all(isinstance(v, dict) for v in whole):  # one array of records
            return frame(data, framing, split=True, cut=cut)
    except orjson.JSONDecodeError:
        pass
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        for line in lines[:-1] if cut and len(lines) > 1 else lines:  # a cut file: its last line is cut
            orjson.loads(line)
        return None  # every line is one value: what the scan rejected is something else (NDJSON stays NDJSON)
    except orjson.JSONDecodeError:
        pass
    framed = frame(data, framing, split=True, cut=cut)
    cut_last = cut and set(framed.errors) == {framed.data.count(b"\n") + 1}
    return framed if framed.per_record and (not framed.errors or cut_last) else None


class _Unparsed:
    def __init__(self, text: str, why: str):
        self.text, self.why = text, why


def _documents(data: bytes, raw_objects: bool = False) -> list | None:
    """The JSON values of a file in order: the whole file as one value, else its lines when each
    parses, else values split one after another (an unparseable rest becomes one _Unparsed). None
    when the file is not UTF-8 or not even its first value parses. `raw_objects`: an object that
    fits on one line stays its bytes, unparsed (Firehose: no parse before the scan's)."""
    try:
        return [orjson.loads(data)]
    except orjson.JSONDecodeError:
        pass
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        return [orjson.loads(line) for line in lines]
    except orjson.JSONDecodeError:
        pass
    slices = _value_slices(data)
    if slices is not None:
        raws = (data[a:b] for a, b in slices)
        return [raw if raw_objects and raw[:1] == b"{" and b"\n" not in raw and b"\r" not in raw else _parse(raw)
                for raw in raws]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder, docs, at = json.JSONDecoder(), [], _SPACE.match(text, 0).end()
    while at < len(text):
        try:
            value, end = decoder.raw_decode(text, at)
        except (ValueError, RecursionError) as exc:
            if not docs:
                return None
            docs.append(_Unparsed(text[at:], f"invalid JSON: {exc}"))
            break
        docs.append(value)
        at = _SPACE.match(text, end).end()
    return docs


_STRUCTURAL = np.zeros(256, bool)
_STRUCTURAL[list(b'"\\{}[]')] = True
_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[list(b" \t\r\n")] = True


def _value_slices(data: bytes) -> list[tuple[int, int]] | None:
    """(start, end) of each top-level object or array of concatenated JSON, found from the
    structural bytes alone (numpy; quotes escaped by an odd run of backslashes do not count), or
    None when the file is not objects and arrays separated by whitespace."""
    buf = np.frombuffer(data, np.uint8)
    where, kind, quotes = _outside_strings(buf)
    if quotes % 2:
        return None
    step = np.where((kind == 123) | (kind == 91), 1, -1)
    depth = np.cumsum(step)
    if not len(depth) or depth.min() < 0 or depth[-1] != 0:
        return None
    starts = where[(depth == 1) & (step == 1)]
    ends = where[depth == 0] + 1
    if len(starts) != len(ends):
        return None
    inside = np.zeros(len(buf) + 1, np.int8)
    inside[starts] += 1
    inside[ends] -= 1
    if np.any(~_WHITESPACE[buf] & (np.cumsum(inside[:-1], dtype=np.int8) == 0)):
        return None  # something between the values (a top-level scalar, stray text)
    return list(zip(starts.tolist(), ends.tolist()))


def _outside_strings(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(positions, bytes) of the brackets that lie outside strings, and how many unescaped quotes
    there are (quotes escaped by an odd run of backslashes do not count)."""
    at = np.flatnonzero(_STRUCTURAL[buf])
    chars = buf[at]
    slashes = at[chars == 92]
    if len(slashes):  # in each run of backslashes, every other one escapes the byte after it
        run_start = np.concatenate(([True], np.diff(slashes) != 1))
        first = np.maximum.accumulate(np.where(run_start, np.arange(len(slashes)), 0))
        escaped = slashes[(np.arange(len(slashes)) - first) % 2 == 0] + 1
    else:
        escaped = np.array([], np.int64)
    quotes = at[chars == 34]
    quotes = quotes[~np.isin(quotes, escaped)]
    others = (chars != 34) & (chars != 92)
    where, kind = at[others], chars[others]
    outside = np.searchsorted(quotes, where) % 2 == 0  # an even number of quotes before: not in a string
    return where[outside], kind[outside], len(quotes)


def _uncut(docs: list | None, data: bytes, level: int) -> list | None:
    """The documents of a file cut by a damaged gzip (on_corrupt: salvage): a last document cut
    inside its records array (a top-level array, level 0, or the array at `records_path`, level =
    its length) keeps the records before the cut; the cut record is the _Unparsed rest."""
    if docs is not None and not (docs and isinstance(docs[-1], _Unparsed)):
        return docs
    head, tail = ([], data) if docs is None else (docs[:-1], docs[-1].text.encode("utf-8", "surrogatepass"))
    found = _cut_array(tail, level)
    if found is None:
        return docs
    doc, rest = found
    cut = [_Unparsed(rest.decode("utf-8", "replace"), "cut by the damage to the gzip")] if rest else []
    return head + [doc] + cut


def _cut_array(raw: bytes, level: int) -> tuple[object, bytes] | None:
    """(the document up to the last whole object or array in its array at depth level + 1, closed
    there; the text after that element), or None when `raw` is not one document cut inside such an array."""
    where, kind, _ = _outside_strings(np.frombuffer(raw, np.uint8))
    opens = (kind == 123) | (kind == 91)
    depth = np.cumsum(np.where(opens, 1, -1))  # after each bracket
    array = np.flatnonzero(opens & (depth == level + 1))
    if not len(array) or kind[array[-1]] != 91 or depth[array[-1]:].min() < level + 1 \
            or depth[:array[-1]].min(initial=1) < 1 or raw[:where[0]].strip():
        return None
    ends = np.flatnonzero(~opens & (depth == level + 1))  # an element of that array closes
    ends = ends[ends > array[-1]]
    if not len(ends):
        return None
    last = ends[-1]
    openers = [kind[np.flatnonzero(opens[:last] & (depth[:last] == d))[-1]] for d in range(level + 1, 0, -1)]
    doc = _parse(raw[:where[last] + 1] + bytes(93 if k == 91 else 125 for k in openers))
    return None if isinstance(doc, _Unparsed) else (doc, raw[where[last] + 1:].lstrip(b", \t\r\n"))


def _parse(raw: bytes):
    """One JSON value (NaN, Infinity and integers past 64 bits read as parse_line reads them), or _Unparsed."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return _Unparsed(raw.decode("utf-8", "replace"), f"invalid JSON: {exc}")


def _records(doc, framing: Framing, kinds: dict) -> list:
    """The records of one document: the elements of `records_path`, else of a top-level array,
    else the document; DynamoDB JSON unmarshalled (noting its string kinds in `kinds`)."""
    if framing.records_path:
        found = doc
        for step in framing.records_path:
            found = found.get(step) if isinstance(found, dict) else None
        if not isinstance(found, list):
            return [_Unparsed(_text(doc), f"no array at records_path {'.'.join(framing.records_path)}")]
        records = found
    else:
        records = doc if isinstance(doc, list) else [doc]
    if framing.dynamodb:
        return [_unmarshal_record(r, kinds) for r in records]
    return records


def _line_by_line(data: bytes, framing: Framing) -> Framed:
    """DynamoDB JSON lines unmarshalled in place: each record keeps its line."""
    lines, errors, kinds = data.split(b"\n"), {}, {}
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = _unmarshal_record(orjson.loads(raw), kinds)
        except orjson.JSONDecodeError:
            continue  # malformed: parse_line rejects the line as it is
        if isinstance(record, _Unparsed):
            lines[i] = BAD
            errors[i + 1] = (record.text, record.why)
        else:
            lines[i] = _dumps(record)
    return Framed(b"\n".join(lines), False, errors, _binary_paths(kinds))


# ---------------------------------------------------------------- DynamoDB JSON

_INTEGER = re.compile(r"^-?\d+$")


class _NotDynamo(LakeError, ValueError):
    pass


def _unmarshal_record(doc, kinds: dict):
    """An export line (`{"Item": …}`) or a stream record (`NewImage`, also under `dynamodb`);
    `kinds`: {path: "S" or "B"}, the tag of the first string value seen at each path."""
    image = None
    if isinstance(doc, dict):
        image = doc.get("Item", doc.get("NewImage", (doc.get("dynamodb") or {}).get("NewImage")
                                        if isinstance(doc.get("dynamodb"), dict) else None))
    if not isinstance(image, dict):
        return _Unparsed(_text(doc), "not DynamoDB JSON: no Item or NewImage object")
    try:
        return {k: unmarshal(v, (k,), kinds) for k, v in image.items()}
    except _NotDynamo as exc:
        return _Unparsed(_text(doc), f"not DynamoDB JSON: {exc}")


def unmarshal(value, path: tuple = (), kinds: dict | None = None):
    """One DynamoDB attribute value (`{"N": "18"}`) as plain JSON: S string, N integer or
    decimal (as JSON numbers are read), BOOL, NULL, M object, L array, SS/NS/BS arrays, B and BS
    their base64 text; into `kinds`, {path: "S" or "B"} of the first string seen at `path` (a
    FieldPath's steps: names, ELEMENT for an array's elements)."""
    if not isinstance(value, dict) or len(value) != 1:
        raise _NotDynamo(f"attribute value {_text(value)[:80]} is not one type tag")
    (tag, inner), = value.items()
    if tag in ("S", "B", "SS", "BS") and kinds is not None:
        kinds.setdefault(path + ((ELEMENT,) if len(tag) == 2 else ()), tag[0])
    if tag in ("S", "B"):
        return inner
    if tag == "N":
        return _number(inner)
    if tag == "BOOL":
        return bool(inner)
    if tag == "NULL":
        return None
    if tag == "M" and isinstance(inner, dict):
        return {k: unmarshal(v, path + (k,), kinds) for k, v in inner.items()}
    if tag == "L" and isinstance(inner, list):
        return [unmarshal(v, path + (ELEMENT,), kinds) for v in inner]
    if tag in ("SS", "BS") and isinstance(inner, list):
        return list(inner)
    if tag == "NS" and isinstance(inner, list):
        return [_number(n) for n in inner]
    raise _NotDynamo(f"unknown type tag {tag!r}")


def _binary_paths(kinds: dict) -> set[FieldPath]:
    return {FieldPath(steps) for steps, tag in kinds.items() if tag == "B"}


def with_binary(schema, paths: set[FieldPath]):
    """The scan's inferred schema with BINARY where `paths` (Framed.binary) have STRING: DynamoDB
    B / BS values, base64 text in the framed records, are bytes (a path first seen otherwise keeps
    its type: the first value wins, as for any field)."""
    from pyspark.sql import types as T

    def at(t, steps):
        if not steps:
            return T.BinaryType() if isinstance(t, T.StringType) else t
        if isinstance(t, T.ArrayType) and steps[0] is ELEMENT:
            return T.ArrayType(at(t.elementType, steps[1:]), t.containsNull)
        if isinstance(t, T.StructType):
            return T.StructType([T.StructField(f.name, at(f.dataType, steps[1:]) if f.name == steps[0] else f.dataType,
                                               f.nullable) for f in t.fields])
        return t
    for path in paths:  # (each path changes its own leaf: any order gives the same schema)
        schema = at(schema, path.steps)
    return schema


def from_base64(value) -> tuple[bool, bytes | None]:
    """Whether a value fits a BINARY column, and its bytes: strict base64 text (a DynamoDB B value),
    as Spark's JSON reader reads a string into BINARY; anything else does not fit (rescued)."""
    if not isinstance(value, str):
        return False, None
    try:
        return True, base64.b64decode(value, validate=True)
    except ValueError:  # (binascii.Error is one)
        return False, None


def decoded_base64(arr):
    """A pyarrow string array as BINARY (from_base64 value by value), or None if a value is not base64."""
    import pyarrow as pa

    out = []
    for value in arr.to_pylist():
        ok, data = from_base64(value) if value is not None else (True, None)
        if not ok:
            return None
        out.append(data)
    return pa.array(out, pa.binary())


def _number(text):
    if not isinstance(text, str):
        raise _NotDynamo(f"N value {text!r} is not a string")
    try:
        return int(text) if _INTEGER.match(text.strip()) else float(text)
    except ValueError:
        raise _NotDynamo(f"N value {text!r} is not a number") from None


# ---------------------------------------------------------------- output

def _dumps(value) -> bytes:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # integers past 64 bits
        return dumps_non_finite(value)


def dumps_non_finite(value) -> bytes:
    """Keeps NaN / Infinity (orjson writes them as null); parse_line and pyarrow read them back."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _text(value) -> str:
    return _dumps(value).decode()
