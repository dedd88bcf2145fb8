"""The pure stages of a bronze batch, without an engine: plan_batch (which files' rows are written,
append or replace, in which days) and decide_schema (the batch schema; failOnNewColumns refuses),
and the scan's decoding of its data source rows (ScanResult.of_row)."""

import datetime as dt

import pytest
from pyspark.sql import types as T

from lake_assets import storage
from lake_assets.config import SourceConfig
from lake_assets.core.bronze import Batch, Planned, decide_schema, plan_batch
from lake_assets.core.framing import Framing
from lake_assets.core.layout import Layout
from lake_assets.core.ledger import COMMITTED, FAILED, Entry
from lake_assets.core.reader import FileTask, ScanResult
from lake_assets.core.schema_log import SchemaVersion

NOW = dt.datetime(2026, 1, 3, tzinfo=dt.timezone.utc)
LONG, STR = T.LongType(), T.StringType()


def _struct(**fields) -> T.StructType:
    return T.StructType([T.StructField(k, v) for k, v in fields.items()])


def _source(mode: str = "addNewColumns") -> SourceConfig:
    return SourceConfig(name="ev", path="ev/", start_date=dt.date(2026, 1, 1), schema_evolution_mode=mode)


def _batch(files: dict[str, Entry | None]) -> Batch:
    """A batch of files named by URI, each with the ledger entry the plan saw (None: never seen)."""
    planned = [Planned(storage.FileInfo(uri, 10, f"e-{uri}", NOW), "2026-01-02", seen) for uri, seen in files.items()]
    tasks = [FileTask(p.file.uri, p.file.etag, p.file.size, p.day, Framing()) for p in planned]
    return Batch("b1", _source(), Layout("/wh", "ev"), planned, tasks)


def _scan(schema: T.StructType | None = None, error: str | None = None) -> ScanResult:
    return ScanResult(0 if error else 1, [], schema or _struct(), None if error else "arrow", error=error)


def _seen(day: str, status: str = COMMITTED) -> Entry:
    return Entry("x", "old", 10, day, status, "b0", "o", NOW)


@pytest.mark.parametrize("seen, errors, fresh, days, readable", [
    ({"a": None, "b": None}, {}, True, ["2026-01-02"], ["a", "b"]),
    ({"a": None, "b": _seen("2026-01-01")}, {}, False, ["2026-01-01", "2026-01-02"], ["a", "b"]),
    ({"a": None, "b": _seen("2026-01-01", FAILED)}, {}, False, ["2026-01-01", "2026-01-02"], ["a", "b"]),
    # an unreadable file that was seen before does not make the readable ones a replace
    ({"a": None, "b": _seen("2026-01-01")}, {"b": "gone"}, True, ["2026-01-01", "2026-01-02"], ["a"]),
    ({"a": None}, {"a": "gone"}, True, [], []),
])
def test_plan_batch_appends_only_files_the_ledger_never_saw(seen, errors, fresh, days, readable):
    batch = _batch(seen)
    scans = {uri: _scan(error=errors.get(uri)) for uri in seen}
    plan = plan_batch(batch, scans, NOW)
    assert (plan.fresh, plan.days, [t.uri for t in plan.readable]) == (fresh, days, readable)
    assert plan.failed == errors and plan.mode == ("append" if fresh else "replace")


def test_plan_batch_scope_and_malformed_files():
    batch = _batch({"a": None, "b": None})
    scans = {"a": ScanResult(2, [3], _struct(), "arrow"), "b": ScanResult(9, None, _struct(), "python")}
    plan = plan_batch(batch, scans, NOW)
    assert [t.uri for t in plan.with_malformed] == ["a", "b"]   # None: more malformed lines than tracked
    assert plan.scope == "t._landing_date IN ('2026-01-02') AND t._source_file IN ('a', 'b')"
    assert not plan_batch(batch, {u: _scan() for u in "ab"}, NOW).with_malformed


ACCEPTED = SchemaVersion(0, _struct(id=LONG), "t", "initial inference")


@pytest.mark.parametrize("mode, accepted, target, refused, changed", [
    # the first batch always grows the schema, whatever the mode
    ("failOnNewColumns", None, _struct(id=LONG, extra=STR), None, True),
    ("addNewColumns", ACCEPTED, _struct(id=LONG, extra=STR), None, True),
    ("rescue", ACCEPTED, _struct(id=LONG), None, False),
    ("none", ACCEPTED, _struct(id=LONG), None, False),
    ("failOnNewColumns", ACCEPTED, _struct(id=LONG), _struct(id=LONG, extra=STR), False),
])
def test_decide_schema_by_mode(mode, accepted, target, refused, changed):
    batch = _batch({"a": None, "b": None})
    scans = {"a": _scan(_struct(id=LONG)), "b": _scan(_struct(id=LONG, extra=STR))}
    decision = decide_schema(_source(mode), accepted, plan_batch(batch, scans, NOW))
    assert (decision.target, decision.refused, decision.changed) == (target, refused, changed)
    assert decision.introducing == (["a", "b"] if accepted is None else ["b"])
    assert decision.evolution.new_fields == (["id bigint", "extra string"] if accepted is None else ["extra string"])


def test_decide_schema_merges_files_in_batch_order_and_skips_unreadable_ones():
    batch = _batch({"a": None, "b": None, "c": None})
    scans = {"c": _scan(error="gone"), "b": _scan(_struct(v=STR)), "a": _scan(_struct(v=LONG, w=LONG))}
    decision = decide_schema(_source(), None, plan_batch(batch, scans, NOW))
    assert decision.target == _struct(v=LONG, w=LONG) and decision.introducing == ["a", "b"]  # a first: its v wins


@pytest.mark.parametrize("row, want", [
    ({"records": 3, "malformed": "[2,7]", "schema": _struct(id=LONG).json(), "engine": "arrow", "split": False,
      "lost": None, "error": None}, ScanResult(3, [2, 7], _struct(id=LONG), "arrow")),
    ({"records": 9, "malformed": "null", "schema": _struct().json(), "engine": "python", "split": True,
      "lost": "cut at byte 40", "error": None}, ScanResult(9, None, _struct(), "python", True, "cut at byte 40")),
    ({"records": 0, "malformed": "[]", "schema": None, "engine": None, "split": False, "lost": None,
      "error": "no longer exists"}, ScanResult(0, [], None, None, error="no longer exists")),
])
def test_scan_rows_decode_once_at_the_data_source_boundary(row, want):
    got = ScanResult.of_row(row)
    assert got == want and got.has_malformed == (want.malformed != [])
