"""Silver from bronze: exact table contents after sequences of runs (upsert, scd2, append + expectations)."""

import pytest

from lake_assets.core import layout, silver, tables
from lake_assets_tests.scenario_helpers import DAY1 as D1, DAY2 as D2, DAY3 as D3
from lake_assets_tests.scenario_helpers import UPSERT, Lake, pandas_rows, table_rows


def run(spark, lake: Lake, name: str, *days: str):
    return silver.run(spark, lake.lake_config, lake.lake_config.silver[name], list(days), log=lambda m: None)


# ---------------------------------------------------------------- upsert

def test_upsert_latest_wins_across_out_of_order_duplicates_and_replays(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=UPSERT, schema_hints="seq BIGINT")
    uri = layout.silver_uri(lake.warehouse, "events")
    # Day 1: id 1 arrives newest-first; id 2 comes twice with the same seq from two files (b.json wins the tie).
    lake.land(D1, "a.json", [{"id": "1", "seq": 12, "payload": {"v": "new"}},
                             {"id": "1", "seq": 10, "payload": {"v": "old"}},
                             {"id": "2", "seq": 5, "payload": {"v": "from-a"}}])
    lake.land(D1, "b.json", [{"id": "2", "seq": 5, "payload": {"v": "from-b"}}])
    lake.ingest_with(spark, D1)
    result = run(spark, lake, "events", D1)
    assert (result.rows_read, result.rows_written, result.table_rows) == (4, 2, 2)
    expected = [("1", 12, "new"), ("2", 5, "from-b")]
    assert table_rows(spark, uri, ["id", "seq", "v"]) == expected

    # Day 2: a late, older record for id 1 must not overwrite it; id 2 gets a newer one; id 3 is new;
    # id 1's latest record is re-sent (same seq): the stored row stays, with its landing date.
    lake.land(D2, "c.json", [{"id": "1", "seq": 11, "payload": {"v": "late"}},
                             {"id": "1", "seq": 12, "payload": {"v": "new"}},
                             {"id": "2", "seq": 6, "payload": {"v": "newer"}},
                             {"id": "3", "seq": 1, "payload": {"v": "x"}}])
    lake.ingest_with(spark, D2)
    run(spark, lake, "events", D2)
    expected = [("1", 12, "new", D1), ("2", 6, "newer", D2), ("3", 1, "x", D2)]
    assert table_rows(spark, uri, ["id", "seq", "v", "_landing_date"]) == expected

    # Replays: day 1 again (older than what is stored for id 2), both days at once, a bronze reprocess.
    run(spark, lake, "events", D1)
    run(spark, lake, "events", D1, D2)
    lake.ingest_with(spark, D1, reprocess=True)
    run(spark, lake, "events", D1)
    assert table_rows(spark, uri, ["id", "seq", "v", "_landing_date"]) == expected
    assert pandas_rows(uri, ["id", "seq", "v"]) == [e[:3] for e in expected]


def test_upsert_new_bronze_columns_flow_into_silver_with_star(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", schema_hints="seq BIGINT", silver="""\
  events:
    from: ev
    select: ["*", "payload.v AS v"]
    keys: [id]
    sequence_by: seq
    mode: upsert
""")
    uri = layout.silver_uri(lake.warehouse, "events")
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}])
    lake.ingest_with(spark, D1)
    run(spark, lake, "events", D1)
    assert "colour" not in tables.read(spark, uri).columns

    # New top-level and nested fields appear in bronze; `*` carries them into silver.
    # (a key holding a backtick, too: its column is quoted with the backtick doubled)
    lake.land(D2, "b.json", [{"id": "2", "seq": 2, "payload": {"v": "b", "w": 7}, "colour": "red"},
                             {"id": "1", "seq": 3, "payload": {"v": "c"}, "colour": "blue", "odd`name": 1}])
    lake.ingest_with(spark, D2)
    result = run(spark, lake, "events", D2)
    assert {"colour", "payload", "odd`name"} <= set(result.schema.fieldNames())
    assert pandas_rows(uri, ["id", "odd`name"]) == [("1", 1), ("2", None)]
    assert table_rows(spark, uri, ["id", "seq", "v", "colour", "payload.w"]) == [("1", 3, "c", "blue", None),
                                                                         ("2", 2, "b", "red", 7)]
    assert pandas_rows(uri, ["id", "colour"]) == [("1", "blue"), ("2", "red")]


# ---------------------------------------------------------------- scd2

HINTS = "seq BIGINT, op STRING, note STRING"
SCD2 = """\
  devices:
    from: ev
    select: ["device AS device_id", seq, fw, note, op]
    keys: [device_id]
    sequence_by: seq
    mode: scd2
    track_history_columns: [fw]
    delete_when: "op = 'delete'"
    valid_from_column: start_at
    valid_to_column: end_at
    is_current_column: current
"""


def test_scd2_history_out_of_order_deletes_and_replays(spark, tmp_path):
    # op and note are hinted: select needs them in bronze before any record carries them.
    lake = Lake(tmp_path, source="ev", silver=SCD2, schema_hints=HINTS)
    uri = layout.silver_uri(lake.warehouse, "devices")
    cols = ["device_id", "fw", "start_at", "end_at", "current"]
    # Day 1, out of order within the batch: d1 is fw 1 at 10 and 20 (no change), fw 2 at 30 and 40.
    lake.land(D1, "a.json", [{"device": "d1", "seq": 30, "fw": 2, "note": "x"},
                             {"device": "d1", "seq": 10, "fw": 1, "note": "first"},
                             {"device": "d2", "seq": 10, "fw": 5},
                             {"device": "d1", "seq": 40, "fw": 2, "note": "untracked change"},
                             {"device": "d1", "seq": 20, "fw": 1}])
    lake.ingest_with(spark, D1)
    result = run(spark, lake, "devices", D1)
    day1 = [("d1", 1, 10, 30, False), ("d1", 2, 30, None, True), ("d2", 5, 10, None, True)]
    assert table_rows(spark, uri, cols) == day1
    assert (result.table_rows, result.current_rows) == (3, 2)
    # A version keeps the values of the record that started it.
    assert table_rows(spark, uri, ["device_id", "start_at", "note"]) == [("d1", 10, "first"), ("d1", 30, "x"),
                                                                    ("d2", 10, None)]
    run(spark, lake, "devices", D1)
    assert table_rows(spark, uri, cols) == day1

    # Day 2: a late fw 3 at 25 slots into d1's history; d2 is deleted at 20 (its current row closes).
    lake.land(D2, "b.json", [{"device": "d1", "seq": 25, "fw": 3},
                             {"device": "d2", "seq": 20, "op": "delete"}])
    lake.ingest_with(spark, D2)
    run(spark, lake, "devices", D2)
    day2 = [("d1", 1, 10, 25, False), ("d1", 2, 30, None, True), ("d1", 3, 25, 30, False),
            ("d2", 5, 10, 20, False)]
    assert table_rows(spark, uri, cols) == day2

    # Day 3: d2 comes back with the same firmware: a new version after the delete.
    # d1's record at 30 is re-sent: its stored version stays as it was (landing date included).
    lake.land(D3, "c.json", [{"device": "d2", "seq": 30, "fw": 5},
                             {"device": "d1", "seq": 30, "fw": 2, "note": "x"}])
    lake.ingest_with(spark, D3)
    run(spark, lake, "devices", D3)
    final = day2 + [("d2", 5, 30, None, True)]
    assert table_rows(spark, uri, cols) == final
    assert table_rows(spark, uri, ["start_at", "_landing_date"])[-2:] == [(30, D1), (30, D3)]

    # Rerunning any partition, or all of them at once, creates no new versions.
    run(spark, lake, "devices", D2)
    run(spark, lake, "devices", D1)
    run(spark, lake, "devices", D1, D2, D3)
    assert table_rows(spark, uri, cols) == final
    assert pandas_rows(uri, cols) == sorted(final, key=lambda r: (r[0], r[1], r[2]))


def test_scd2_all_days_in_one_batch_equals_day_by_day(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=SCD2.replace("track_history_columns: [fw]",
                                                           "track_history_except_columns: [note, op]"),
                schema_hints=HINTS)
    lake.land(D1, "a.json", [{"device": "d1", "seq": 10, "fw": 1}, {"device": "d1", "seq": 30, "fw": 2}])
    lake.land(D2, "b.json", [{"device": "d1", "seq": 20, "fw": 1, "note": "same fw, no version"},
                             {"device": "d1", "seq": 35, "op": "delete"}])
    lake.land(D3, "c.json", [{"device": "d1", "seq": 40, "fw": 2}, {"device": "d1", "seq": 36, "op": "delete"}])
    lake.ingest_with(spark, D1, D2, D3)
    run(spark, lake, "devices", D1, D2, D3)
    expected = [("d1", 1, 10, 30, False), ("d1", 2, 30, 35, False), ("d1", 2, 40, None, True)]
    assert table_rows(spark, layout.silver_uri(lake.warehouse, "devices"), ["device_id", "fw", "start_at", "end_at", "current"]) \
        == expected


# ---------------------------------------------------------------- append + expectations

APPEND = """\
  readings:
    from: ev
    select: [id, seq, "payload.v AS v", "payload.n AS n"]
    mode: append
    expectations:
      has_v: {expr: "v IS NOT NULL", on_violation: warn}
      positive: {expr: "n > 0", on_violation: drop}
      has_id: {expr: "id IS NOT NULL", on_violation: quarantine}
"""


def test_append_expectations_warn_drop_quarantine_and_rerun(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=APPEND, schema_hints="seq BIGINT")
    uri, quarantine = layout.silver_uri(lake.warehouse, "readings"), layout.silver_quarantine_uri(lake.warehouse, "readings")
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a", "n": 1}},
                             {"id": "2", "seq": 2, "payload": {"n": 2}},             # warn only
                             {"id": "3", "seq": 3, "payload": {"v": "c", "n": -1}},  # dropped
                             {"seq": 4, "payload": {"v": "d", "n": -5}},             # quarantined (and would drop)
                             {"seq": 5, "payload": {"v": "e", "n": 5}}])             # quarantined
    lake.land(D2, "b.json", [{"id": "6", "seq": 6, "payload": {"v": "f", "n": 6}}])
    lake.ingest_with(spark, D1, D2)
    result = run(spark, lake, "readings", D1)
    assert result.expectations == {
        "has_v": {"passed": 4, "failed": 1, "on_violation": "warn"},
        "positive": {"passed": 3, "failed": 2, "on_violation": "drop"},
        "has_id": {"passed": 3, "failed": 2, "on_violation": "quarantine"}}
    assert (result.rows_read, result.rows_dropped, result.rows_quarantined, result.rows_written) == (5, 1, 2, 2)
    assert table_rows(spark, uri, ["id", "seq", "v"]) == [("1", 1, "a"), ("2", 2, None)]
    failed = [(4, ["positive", "has_id"]), (5, ["has_id"])]
    assert [(s, list(f)) for s, f in table_rows(spark, quarantine, ["seq", silver.FAILED_COLUMN])] == failed
    assert pandas_rows(quarantine, ["seq", "_landing_date"]) == [(4, D1), (5, D1)]

    run(spark, lake, "readings", D2)
    run(spark, lake, "readings", D1)  # a rerun replaces the day's rows in both tables: no duplicates
    assert table_rows(spark, uri, ["id", "seq", "v", "_landing_date"]) == [("1", 1, "a", D1), ("2", 2, None, D1),
                                                                     ("6", 6, "f", D2)]
    assert pandas_rows(uri, ["id", "seq"]) == [("1", 1), ("2", 2), ("6", 6)]
    assert len(table_rows(spark, quarantine, ["seq"])) == 2


def test_fail_expectation_stops_before_anything_is_written(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=APPEND.replace("on_violation: quarantine", "on_violation: fail"), schema_hints="seq BIGINT")
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a", "n": 1}},
                             {"seq": 2, "payload": {"v": "b", "n": 1}}, {"seq": 3, "payload": {"v": "b", "n": 1}}])
    lake.ingest_with(spark, D1)
    with pytest.raises(silver.ExpectationFailed, match=r"'has_id' \(2 of 3 rows\)") as err:
        run(spark, lake, "readings", D1)
    assert err.value.failures == {"has_id": 2}
    assert tables.schema_or_none(spark, layout.silver_uri(lake.warehouse, "readings")) is None
    assert tables.schema_or_none(spark, layout.silver_quarantine_uri(lake.warehouse, "readings")) is None


def test_bad_select_names_the_silver_table(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=UPSERT.replace("payload.v AS v", "payload.nope AS v"), schema_hints="seq BIGINT")
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}])
    lake.ingest_with(spark, D1)
    with pytest.raises(silver.SilverError, match="silver 'events': select"):
        run(spark, lake, "events", D1)
