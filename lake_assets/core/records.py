"""Per-record work: parse a JSON line, fit it to a schema, and collect what does not fit.

A value fits a column when the column can hold it unchanged (integers also fit DOUBLE columns).
Everything else — unknown fields (outside `addNewColumns`), type conflicts, names that differ only
in case or that Delta rejects, integers that overflow a hinted INT — goes to the rescued column
verbatim, keyed by its field path (`device.fw.patch`, `signals[2].unit`; a key holding a dot is
backtick-quoted: `` meta.`CodePipeline.job` ``). Pure Python, no Spark.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re

import orjson
from pyspark.sql import types as T

from lake_assets.core.schema import is_empty
from lake_assets.errors import LakeError

_INT_RANGES = {T.ByteType: 2**7, T.ShortType: 2**15, T.IntegerType: 2**31, T.LongType: 2**63}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# Records nested deeper than this many objects/arrays (the record itself is level 1) are
# quarantined with the reason, instead of a RecursionError downstream. 32 is what Spark Connect
# carries: a 33-level schema fails on Sail ("Exception deserializing response"), ~50 in its parser.
MAX_NESTING = 32


class Malformed(LakeError, ValueError):
    """A line that is not a JSON object."""


def parse_line(line: bytes | str) -> dict:
    """Parse one NDJSON line into a dict, or raise Malformed with the reason."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    long_integer = LONG_INTEGER.search(line) is not None
    try:
        value = orjson.loads(line)
        if long_integer:
            value = _parse_exact(line)
    except orjson.JSONDecodeError as exc:
        non_finite = _NON_FINITE.search(line) is not None
        if not (long_integer or non_finite):
            raise Malformed(f"invalid JSON: {exc}") from None
        value = _parse_exact(line, non_finite)
    if not isinstance(value, dict):
        raise Malformed(f"not a JSON object (a JSON {type(value).__name__})")
    if line.count(b"{") + line.count(b"[") > MAX_NESTING and _nesting(value) > MAX_NESTING:
        raise Malformed(f"nested deeper than {MAX_NESTING} levels of objects/arrays (the limit)")
    return value


def _nesting(value) -> int:
    """How many objects/arrays deep `value` goes (iterative: the value may be too deep to recurse)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


# orjson rounds integers past 64 bits to floats (or fails on them); the standard parser keeps them exact.
LONG_INTEGER = re.compile(rb"[:\[,]\s*-?\d{19,}\s*[,}\]]")


# NaN, Infinity and -Infinity, which Spark's JSON reader reads as doubles (orjson rejects them).
_NON_FINITE = re.compile(rb"[:\[,]\s*-?(?:NaN|Infinity)\s*[,}\]]")


def _parse_exact(line: bytes, non_finite: bool = False):
    def reject(text):
        raise Malformed(f"invalid JSON: number out of range or not a number: {text}")

    def number(text):
        value = float(text)
        return reject(text) if math.isinf(value) else value

    try:
        return json.loads(line, parse_constant=float if non_finite else reject, parse_float=number)
    except Malformed:
        raise
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"invalid JSON: {exc}") from None


def path_segment(key: str) -> str:
    """A key as one segment of a rescued field path. Keys holding `.`, a backtick or brackets are
    backtick-quoted (backticks doubled), as Spark quotes names: `{"a.b": 1}` is rescued under
    `` `a.b` ``, `{"a": {"b": 1}}` under `a.b`."""
    return "`" + key.replace("`", "``") + "`" if any(c in key for c in ".`[]") else key


def field_path(steps) -> str:
    return ".".join(path_segment(s) for s in steps)


class Fitter:
    """Fits parsed records to one schema. `rescue_unknown` is False only for mode `none`."""

    def __init__(self, schema: T.StructType, rescue_unknown: bool = True):
        self.schema = schema
        self.rescue_unknown = rescue_unknown

    def fit(self, record: dict) -> tuple[dict, dict, list[str]]:
        """(clean record, rescued {path: value}, ignored unknown paths)."""
        rescued: dict = {}
        ignored: list[str] = []
        clean = self._struct(record, self.schema, "", rescued, ignored)
        return clean, rescued, ignored

    def _struct(self, obj: dict, schema: T.StructType, path: str, rescued: dict, ignored: list) -> dict:
        fields = {f.name: f.dataType for f in schema.fields}
        out = {}
        for key, value in obj.items():
            sub = f"{path}.{path_segment(key)}" if path else path_segment(key)
            if key in fields:
                fitted = self._value(value, fields[key], sub, rescued, ignored)
                if fitted is not None:
                    out[key] = fitted
            elif is_empty(value):  # null, [], {}: nothing to keep, never rescued
                continue
            elif self.rescue_unknown:
                rescued[sub] = value
            else:
                ignored.append(sub)
        return out

    def _value(self, value, t: T.DataType, path: str, rescued: dict, ignored: list):
        if value is None:
            return None
        ok, fitted = True, value
        if isinstance(t, T.StructType):
            if isinstance(value, dict):
                return self._struct(value, t, path, rescued, ignored)
            ok = False
        elif isinstance(t, T.ArrayType):
            if isinstance(value, list):
                return [self._value(v, t.elementType, f"{path}[{i}]", rescued, ignored)
                        for i, v in enumerate(value)]
            ok = False
        elif isinstance(t, T.MapType):
            if isinstance(value, dict):
                return {k: self._value(v, t.valueType, f"{path}.{path_segment(k)}", rescued, ignored)
                        for k, v in value.items()}
            ok = False
        else:
            ok, fitted = fit_atomic(value, t)
        if not ok and is_empty(value):  # [] or {} where the column holds something else: null, not a conflict
            return None
        if not ok:
            rescued[path] = value
            return None
        return fitted


def fit_atomic(value, t: T.DataType) -> tuple[bool, object]:
    """Whether a JSON scalar fits an atomic column type, and the value to write."""
    if isinstance(t, T.StringType):  # any value, as its JSON text (as Spark's JSON reader stores it)
        return True, value if isinstance(value, str) else json_text(value)
    if isinstance(t, T.BooleanType):
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, value
    if type(t) in _INT_RANGES:
        bound = _INT_RANGES[type(t)]
        return isinstance(value, int) and -bound <= value < bound, value
    if isinstance(t, (T.DoubleType, T.FloatType)):
        if isinstance(value, int) and not -2**63 <= value < 2**63:
            return False, value   # an integer past BIGINT is rescued verbatim, never rounded
        if isinstance(value, (int, float)):
            as_float = float(value)
            if isinstance(t, T.FloatType) and abs(as_float) > 3.4028234e38:
                return False, value
            return True, as_float if isinstance(value, int) and abs(value) >= 2**53 else value
        return False, value
    if isinstance(t, T.DecimalType):
        if isinstance(value, (int, float)):
            d = decimal.Decimal(str(value))
            digits = len(d.as_tuple().digits)
            exponent = d.as_tuple().exponent
            scale_used = max(0, -exponent)
            int_digits = max(0, digits + exponent)
            fits = scale_used <= t.scale and int_digits <= t.precision - t.scale
            # past 64 bits as text (the JSON encoder stops there; from_json reads decimals from strings)
            return fits, str(value) if isinstance(value, int) and not -2**63 <= value < 2**63 else value
        return False, value
    if isinstance(t, T.DateType):
        if isinstance(value, str) and _DATE.match(value):
            try:
                dt.date.fromisoformat(value)
                return True, value
            except ValueError:
                pass
        return False, value
    if isinstance(t, T.TimestampType):
        if isinstance(value, str):
            try:
                ts = dt.datetime.fromisoformat(value)
            except ValueError:
                return False, value
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=dt.timezone.utc)
            try:
                ts = ts.astimezone(dt.timezone.utc)
            except OverflowError:  # the UTC instant falls outside years 1..9999
                return False, value
            # One canonical UTC form, "YYYY-MM-DD HH:MM:SS.ffffff", which pyarrow reads back.
            return True, ts.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return False, value
    if isinstance(t, T.BinaryType):  # (landings room) base64 text, e.g. DynamoDB B: framing.from_base64
        from lake_assets.core.framing import from_base64
        return from_base64(value)
    return False, value


def json_text(value) -> str:
    """A parsed JSON value as compact JSON text (NaN and Infinity as Spark writes them)."""
    from lake_assets.core.framing import dumps_non_finite

    if isinstance(value, float) and not math.isfinite(value):
        return dumps_non_finite(value).decode()
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # integers past 64 bits
        return dumps_non_finite(value).decode()


def rescued_json(rescued: dict, file_path: str) -> str | None:
    if not rescued:
        return None
    # a data field named like the file key keeps its value under a quoted path (`_file_path`)
    doc = {("`_file_path`" if k == "_file_path" else k): v for k, v in rescued.items()}
    doc["_file_path"] = file_path
    try:
        return orjson.dumps(doc).decode()
    except orjson.JSONEncodeError:  # integers past 64 bits
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
