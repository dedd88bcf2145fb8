"""The per-day verdicts of the bronze checks: rescued values by class, thresholds per class, the
jump over the source's baseline (a new source judged by conflicts only), malformed and unreadable."""

import datetime as dt

from pyspark.sql import types as T

from lake_assets.config import ChecksConfig
from lake_assets.core.ledger import Entry
from lake_assets.core.quality import (ERROR, PASS, WARN, ClassCount, DayFacts, Rescued, baseline, classify, day_facts,
                                      judge_malformed, judge_rescued, judge_unreadable)

SCHEMA = T.StructType([T.StructField("id", T.LongType()), T.StructField("temp", T.DoubleType()),
                       T.StructField("device", T.StructType([T.StructField("fw", T.StructType([
                           T.StructField("minor", T.LongType())]))])),
                       T.StructField("signals", T.ArrayType(T.StructType([T.StructField("unit", T.StringType())]))),
                       T.StructField("tags", T.MapType(T.StringType(), T.LongType()))])


def test_rescued_paths_are_classified():
    assert classify("device.fw.minor", SCHEMA, "_rescued_data") == "type_conflict"
    assert classify("signals[].unit", SCHEMA, "_rescued_data") == "type_conflict"
    assert classify("signals", SCHEMA, "_rescued_data") == "type_conflict"
    assert classify("tags.a", SCHEMA, "_rescued_data") == "type_conflict"
    assert classify("device.fw.patch", SCHEMA, "_rescued_data") == "unknown_field"
    assert classify("battery", SCHEMA, "_rescued_data") == "unknown_field"
    assert classify("Temp", SCHEMA, "_rescued_data") == "name_collision"
    assert classify("device.FW", SCHEMA, "_rescued_data") == "name_collision"
    assert classify("a b", SCHEMA, "_rescued_data") == "name_collision"
    assert classify("_line", SCHEMA, "_rescued_data") == "name_collision"


def _entry(day, records, rescued, status="committed", error=None, uri=None):
    return Entry(uri or f"s3://l/{day}/{records}-{rescued}-{status}.json", "e", 100, day, status, "b1", None, None,
                 dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc), records, 1, rescued, error)


def test_baseline_is_the_median_of_earlier_days_once_there_are_enough():
    checks = ChecksConfig(baseline_days=3, baseline_min_days=2)
    entries = {e.uri: e for e in [_entry("2026-01-01", 100, 10), _entry("2026-01-02", 100, 12),
                                  _entry("2026-01-03", 100, 50), _entry("2026-01-04", 100, 14),
                                  _entry("2026-01-05", 100, 90, status="failed")]}
    assert baseline(entries, "2026-01-02", checks) is None           # one earlier day: no baseline yet
    assert baseline(entries, "2026-01-03", checks) == 0.11
    assert baseline(entries, "2026-01-06", checks) == 0.14           # last 3 days: .12 .50 .14; failed file ignored
    facts = day_facts(entries, ["2026-01-04", "2026-01-05"], ["b1"])
    assert (facts["2026-01-04"].rows, facts["2026-01-04"].files, facts["2026-01-05"].files) == (100, 1, 0)
    assert list(facts["2026-01-05"].failed.values()) == ["failed"]


def _rescued(rows, type_conflicts=0, unknown=0, collisions=0):
    classes = {name: ClassCount(n, [(path, n)]) for name, n, path in (
        ("type_conflict", type_conflicts, "device.fw.minor"), ("unknown_field", unknown, "battery"),
        ("name_collision", collisions, "Temp")) if n}
    return Rescued(rows, type_conflicts + unknown + collisions, classes)


def test_a_stable_share_of_unknown_fields_passes_and_a_jump_fails():
    checks = ChecksConfig()
    stable = judge_rescued(_rescued(1000, unknown=120), 0.12, checks)   # 12 % every day
    assert stable.level == PASS and stable.description.startswith("12 % rows rescued, unknown fields: battery 120")
    jump = judge_rescued(_rescued(1000, unknown=400), 0.12, checks)
    assert jump.level == ERROR and "up 28 points from the baseline 12 %" in jump.description
    assert judge_rescued(_rescued(1000, unknown=190), 0.12, checks).level == WARN
    # a new source: unknown fields alone never fire, conflicts do
    assert judge_rescued(_rescued(1000, unknown=900), None, checks).level == PASS
    conflict = judge_rescued(_rescued(1000, type_conflicts=153), None, checks)
    assert conflict.level == ERROR
    assert conflict.description == ("15.3 % rows rescued (type conflicts 15.3 % > 10 %), type conflicts: "
                                    "device.fw.minor 153 (no baseline yet: judged by conflicts only)")
    assert conflict.metadata["type_conflict_pct"] == 15.3 and conflict.metadata["type_conflict_paths"] == \
        {"device.fw.minor": 153}
    assert judge_rescued(_rescued(1000, collisions=1), None, checks).level == WARN
    assert judge_rescued(_rescued(1000, type_conflicts=20), None,
                         ChecksConfig(type_conflict_rate_warn=None, type_conflict_rate_error=0.5)).level == PASS
    total = judge_rescued(_rescued(1000, unknown=300), 0.3, ChecksConfig(rescued_rate_error=0.25))
    assert total.level == ERROR and "(> 25 %)" in total.description


def test_malformed_and_unreadable_verdicts():
    day = DayFacts("2026-01-01", files=2, rows=990, malformed=10, failed={"s3://l/x.gz": "not a readable gzip file"})
    malformed = judge_malformed(day, ChecksConfig())
    assert (malformed.level, malformed.description) == (WARN, "1 % lines malformed (10 of 1000) (> 0.1 %)")
    unreadable = judge_unreadable(day, ChecksConfig())
    assert (unreadable.level, unreadable.description) == (ERROR, "1 file(s) unreadable: s3://l/x.gz: not a readable gzip file")
    assert judge_unreadable(day, ChecksConfig(unreadable_files="warn")).level == WARN
    assert judge_unreadable(DayFacts("2026-01-01", files=2), ChecksConfig()).level == PASS
