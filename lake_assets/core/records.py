"""Per-record work: parse a JSON line, fit it to a schema, and collect what does not fit.

A value fits a column when the column can hold it unchanged (integers also fit DOUBLE columns).
Everything else — unknown fields (outside `addNewColumns`), type conflicts, names that differ only
in case or that Delta rejects, integers that overflow a hinted INT — goes to the rescued column
verbatim, keyed by its field path (fieldpath: `device.fw.patch`, `signals[2].unit`; a key holding
a dot is backtick-quoted: `` meta.`CodePipeline.job` ``). Which values fit which columns is the
table typerules.FITS. Pure Python, no Spark.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re

import orjson
from pyspark.sql import types as T

from lake_assets.core.fieldpath import join
from lake_assets.core.layout import RESCUED_FILE_PATH
from lake_assets.core.typerules import ALL, SOME, fits, is_empty, value_tag
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


class Fitter:
    """Fits parsed records to one schema. `rescue_unknown` is False only for mode `none`."""

    def __init__(self, schema: T.StructType, rescue_unknown: bool = True):
        self.schema = schema
        self.rescue_unknown = rescue_unknown
        self._fields: dict[int, dict] = {}  # id of a StructType of `schema` -> {name: type}

    def fit(self, record: dict) -> tuple[dict, dict, list[str]]:
        """(clean record, rescued {path: value}, ignored unknown paths)."""
        rescued: dict = {}
        ignored: list[str] = []
        clean = self._struct(record, self.schema, None, rescued, ignored)
        return clean, rescued, ignored

    def _struct(self, obj: dict, schema: T.StructType, path: str | None, rescued: dict, ignored: list) -> dict:
        fields = self._fields.get(id(schema))
        if fields is None:
            fields = self._fields[id(schema)] = {f.name: f.dataType for f in schema.fields}
        out = {}
        for key, value in obj.items():
            t = fields.get(key)
            if t is not None:
                fitted = self._value(value, t, path, key, rescued, ignored)
                if fitted is not None:
                    out[key] = fitted
            elif is_empty(value):  # null, [], {}: nothing to keep, never rescued
                continue
            elif self.rescue_unknown:
                rescued[join(path, key)] = value
            else:
                ignored.append(join(path, key))
        return out

    def _value(self, value, t: T.DataType, parent: str | None, step, rescued: dict, ignored: list):
        """`value` at `step` (a name or an array position) below the path `parent`, fitted to `t`;
        what does not fit is rescued under its path (typerules.FITS)."""
        if value is None:
            return None
        if isinstance(t, T.StructType) and isinstance(value, dict):
            return self._struct(value, t, join(parent, step), rescued, ignored)
        if isinstance(t, T.ArrayType) and isinstance(value, list):
            path = join(parent, step)
            return [self._value(v, t.elementType, path, i, rescued, ignored) for i, v in enumerate(value)]
        if isinstance(t, T.MapType) and isinstance(value, dict):
            path = join(parent, step)
            return {k: self._value(v, t.valueType, path, k, rescued, ignored) for k, v in value.items()}
        ok, fitted = fit_atomic(value, t)
        if ok:
            return fitted
        if not is_empty(value):  # [] or {} where the column holds something else: null, not a conflict
            rescued[join(parent, step)] = value
        return None


def fit_atomic(value, t: T.DataType) -> tuple[bool, object]:
    """Whether a JSON value fits a column of type `t` (typerules.FITS), and the value to write."""
    if fits(value_tag(value), t)[0] not in (ALL, SOME):
        return False, value
    return _CONVERT[type(t)](value, t)


def _to_string(value, t) -> tuple[bool, object]:  # any value, as its JSON text (as Spark's JSON reader stores it)
    return True, value if isinstance(value, str) else json_text(value)


def _as_is(value, t) -> tuple[bool, object]:
    return True, value


def _to_integer(value: int, t) -> tuple[bool, object]:
    bound = _INT_RANGES[type(t)]
    return -bound <= value < bound, value


def _to_floating(value: int | float, t) -> tuple[bool, object]:
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        return False, value   # an integer past BIGINT is rescued verbatim, never rounded
    if isinstance(t, T.FloatType) and abs(float(value)) > 3.4028234e38:
        return False, value
    return True, float(value) if isinstance(value, int) and abs(value) >= 2**53 else value


def _to_decimal(value: int | float, t: T.DecimalType) -> tuple[bool, object]:
    sign, digits, exponent = decimal.Decimal(str(value)).as_tuple()
    fits_scale = max(0, -exponent) <= t.scale and max(0, len(digits) + exponent) <= t.precision - t.scale
    # past 64 bits as text (the JSON encoder stops there; from_json reads decimals from strings)
    return fits_scale, str(value) if isinstance(value, int) and not -2**63 <= value < 2**63 else value


def _to_date(value: str, t) -> tuple[bool, object]:
    if _DATE.match(value):
        try:
            dt.date.fromisoformat(value)
            return True, value
        except ValueError:
            pass
    return False, value


def _to_timestamp(value: str, t) -> tuple[bool, object]:
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


def _to_binary(value: str, t) -> tuple[bool, object]:  # base64 text, e.g. DynamoDB B (landings room)
    from lake_assets.core.framing import from_base64

    return from_base64(value)


# How a value typerules.FITS lets into a column is written there.
_CONVERT = {T.StringType: _to_string, T.BooleanType: _as_is, T.DoubleType: _to_floating,
            T.FloatType: _to_floating, T.DecimalType: _to_decimal, T.DateType: _to_date,
            T.TimestampType: _to_timestamp, T.BinaryType: _to_binary, **{integer: _to_integer for integer in _INT_RANGES}}


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
    doc = {("`" + k + "`" if k == RESCUED_FILE_PATH else k): v for k, v in rescued.items()}
    doc[RESCUED_FILE_PATH] = file_path
    try:
        return orjson.dumps(doc).decode()
    except orjson.JSONEncodeError:  # integers past 64 bits
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
