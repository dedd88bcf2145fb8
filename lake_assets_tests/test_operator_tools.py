"""The operator's tools through the real `lake` CLI: status, validate, repair, reset, bad input.

Each validate/repair test breaks the lake one way, checks that `lake validate` names the problem
and exits 1, that `lake repair` fixes it, that a second repair changes nothing, and that the data
is then exactly right. Damage is done with Spark SQL (an in-process embedded engine), as an
operator or a buggy job would."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake_assets_tests.scenario_helpers import DAY1, DAY2, SOURCE, Lake, lines_for


pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


def loaded_lake(tmp_path) -> Lake:
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("initial load")
    return lake


def snapshot(lake: Lake) -> dict:
    """Every file under the warehouse with its size and mtime: 'nothing changed' means equal."""
    warehouse = Path(lake.warehouse)
    if not warehouse.exists():
        return {}
    return {str(p.relative_to(warehouse)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in warehouse.rglob("*") if p.is_file()}


def validate_fails_with(lake: Lake, *texts: str) -> str:
    r = lake.run("validate", SOURCE)
    assert r.returncode == 1, str(r)
    for text in texts:
        assert text in r.stdout, f"validate did not report {text!r}:\n{r}"
    return r.stdout


def repair_then_repair_again(lake: Lake, problems: int) -> None:
    first = lake.run("repair", SOURCE)
    assert first.returncode == 0, str(first)
    assert f"repaired {problems} problem(s); 0 left" in first.stdout, str(first)
    before, rows = lake.versions(), sorted(lake.bronze_rows())
    second = lake.run("repair", SOURCE)
    assert second.returncode == 0, str(second)
    assert "repaired 0 problem(s); 0 left" in second.stdout, str(second)
    assert lake.versions() == before, "a second repair wrote to a table"
    assert sorted(lake.bronze_rows()) == rows
    lake.assert_valid()


def sql(spark, statement: str) -> None:
    from lake_assets.core import tables

    tables.retry_conflicts(lambda: spark.sql(statement).collect())


# ---------------------------------------------------------------------------------- status

def test_status_reports_counts_schema_version_and_rescued_rate(tmp_path):
    import gzip

    lake = Lake(tmp_path)
    lake.standard_day(DAY1)                                   # 10 records, 2 malformed
    lake.land(DAY1, "r.json", [{"event_id": "r-1", "n": "not a number", "device": {"id": "x"}},
                               {"event_id": "r-2", "n": 2, "device": {"id": "x"}}])   # 1 rescued
    bad = lake.land_raw(DAY1, "t.json.gz", gzip.compress(b'{"event_id": "t"}\n' * 400)[:40])
    assert lake.ingest(DAY1).returncode == 1                 # the truncated gzip failed
    r = lake.run("status", SOURCE, "--json", "--all")
    assert r.returncode == 0, str(r)
    status = r.json
    assert status["source"] == SOURCE
    assert status["files"] == {"committed": 4, "failed": 1, "pending": 0, "skipped_not_data": 0}
    assert status["records"] == 12 and status["malformed"] == 2
    assert status["rescued_rate"] == round(1 / 12, 6)
    assert status["schema_version"] == 0 and status["schema_pending"] is False
    assert status["table"] == str(lake.bronze_path)
    assert status["table_version"] == lake.version(lake.bronze_path)
    assert status["last_batch"] in {e["batch_id"] for e in lake.ledger()}
    ledger = {e["uri"]: e for e in lake.ledger()}
    assert "gzip" in ledger[bad]["error"]

    lake.land(DAY2, "new.json", [{"event_id": "n-1", "n": 1, "device": {"id": "y"}, "added": True}])
    assert lake.run("status", "--json", "--all").json["files"]["pending"] == 1  # landed, not ingested yet
    lake.ingest(DAY2)
    status = lake.run("status", "--json", "--all").json                # all sources (one here)
    assert status["schema_version"] == 1
    assert status["files"] == {"committed": 5, "failed": 1, "pending": 0, "skipped_not_data": 0}
    assert status["records"] == 13 and status["rescued_rate"] == round(1 / 13, 6)


# ---------------------------------------------------------------------------------- validate + repair

def test_orphaned_claim_is_found_and_repaired(tmp_path):
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    crashed = lake.ingest(DAY1, DAY2, LAKE_CRASH_AT="claimed")
    assert crashed.returncode == -9, str(crashed)
    out = validate_fails_with(lake, "orphaned claim", lake.uri(DAY1, "a.json"), lake.uri(DAY2, "d.json"))
    assert "4 problem(s)" in out
    repair_then_repair_again(lake, 4)
    lake.assert_exactly_once("orphaned claim repaired")


def test_orphaned_claim_during_replace_is_found_and_repaired(tmp_path):
    lake = loaded_lake(tmp_path)
    lake.land(DAY1, "a.json", lines_for("a2", 2))
    crashed = lake.ingest(DAY1, DAY2, LAKE_CRASH_AT="bronze_written")
    assert crashed.returncode == -9, str(crashed)
    validate_fails_with(lake, "orphaned claim", lake.uri(DAY1, "a.json"), "1 problem(s)")
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("orphaned replace repaired")


def test_committed_file_with_deleted_rows_is_found_and_reloaded(tmp_path, spark):
    lake = loaded_lake(tmp_path)
    a = lake.uri(DAY1, "a.json")
    sql(spark, f"DELETE FROM delta.`{lake.bronze_path}` WHERE _source_file = '{a}'")
    assert not [r for r in lake.bronze_rows() if r[0] == a]
    validate_fails_with(lake, "rows do not match the ledger", a, "1 problem(s)")
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("deleted rows reloaded")


def test_committed_file_with_some_rows_deleted_is_reloaded(tmp_path, spark):
    lake = loaded_lake(tmp_path)
    b = lake.uri(DAY1, "b.json")
    sql(spark, f"DELETE FROM delta.`{lake.bronze_path}` WHERE _source_file = '{b}' AND _line = 2")
    validate_fails_with(lake, "rows do not match the ledger", b)
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("one deleted row reloaded")


def test_duplicate_rows_of_an_unknown_batch_are_found_and_deleted(tmp_path, spark):
    from pyspark.sql import functions as F

    lake = loaded_lake(tmp_path)
    b = lake.uri(DAY1, "b.json")
    copy = (spark.read.format("delta").load(str(lake.bronze_path)).where(F.col("_source_file") == b)
            .withColumn("_batch_id", F.lit("rogue-batch")))
    copy.write.format("delta").mode("append").partitionBy("_landing_date").save(str(lake.bronze_path))
    assert len([r for r in lake.bronze_rows() if r[0] == b]) == 8
    validate_fails_with(lake, "4 row(s) of an unknown batch for " + b, "1 problem(s)")
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("duplicates deleted")
    assert "rogue-batch" not in {r[5] for r in lake.bronze_rows()}


def test_rows_of_a_file_the_ledger_forgot_are_registered_and_reloaded(tmp_path, spark):
    lake = loaded_lake(tmp_path)
    a = lake.uri(DAY1, "a.json")
    sql(spark, f"DELETE FROM delta.`{lake.ledger_path}` WHERE uri = '{a}'")
    validate_fails_with(lake, "4 row(s) from a file the ledger does not know: " + a, "1 problem(s)")
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("forgotten file reloaded")


def test_rows_of_an_unknown_file_gone_from_the_landing_are_adopted(tmp_path, spark):
    lake = loaded_lake(tmp_path)
    g = lake.uri(DAY2, "d.json")
    lake.path(DAY2, "d.json").unlink()
    sql(spark, f"DELETE FROM delta.`{lake.ledger_path}` WHERE uri = '{g}'")
    validate_fails_with(lake, "2 row(s) from a file the ledger does not know: " + g)
    repair_then_repair_again(lake, 1)
    # the rows are the only copy left: kept once, and the ledger records them as committed
    assert sorted((u, n, e) for u, n, e, *_ in lake.bronze_rows() if u == g) == [(g, 1, "d-1"), (g, 2, "d-2")]
    entry = {e["uri"]: e for e in lake.ledger()}[g]
    assert entry["status"] == "committed" and entry["records"] == 2
    lake.land(DAY2, "d.json", lines_for("d", 2))                   # the file comes back: reloaded once
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("adopted file landed again")
    lake.assert_valid()


def test_all_problems_at_once(tmp_path, spark):
    from pyspark.sql import functions as F

    lake = loaded_lake(tmp_path)
    a, b, c = (lake.uri(DAY1, n) for n in ("a.json", "b.json", "c.json.gz"))
    d = lake.uri(DAY2, "d.json")
    sql(spark, f"DELETE FROM delta.`{lake.bronze_path}` WHERE _source_file = '{a}'")
    (spark.read.format("delta").load(str(lake.bronze_path)).where(F.col("_source_file") == b)
     .withColumn("_batch_id", F.lit("rogue")).write.format("delta").mode("append")
     .partitionBy("_landing_date").save(str(lake.bronze_path)))
    sql(spark, f"DELETE FROM delta.`{lake.ledger_path}` WHERE uri = '{c}'")
    lake.land(DAY2, "d.json", lines_for("d2", 3))
    assert lake.ingest(DAY1, DAY2, LAKE_CRASH_AT="bronze_written").returncode == -9   # d: orphaned claim
    # that run first rebuilt c's lost ledger entry from bronze's lineage, so three problems are left
    assert {e["uri"]: e["status"] for e in lake.ledger()}[c] == "committed"
    validate_fails_with(lake, "3 problem(s)", f"orphaned claim (run died): {d}")
    repair_then_repair_again(lake, 3)
    lake.assert_exactly_once("all problems repaired")


# ---------------------------------------------------------------------------------- reset

def test_reset_needs_confirmation_then_empties_and_keeps_history(tmp_path, spark):
    lake = loaded_lake(tmp_path)
    before, rows = snapshot(lake), sorted(lake.bronze_rows())
    old_version = lake.version(lake.bronze_path)

    for extra in ([], ["--confirm", "other"]):
        r = lake.run("reset", SOURCE, *extra)
        assert r.returncode == 2, str(r)
        assert f"--confirm {SOURCE}" in r.stderr, str(r)
        assert snapshot(lake) == before, "an unconfirmed reset changed the warehouse"

    r = lake.run("reset", SOURCE, "--confirm", SOURCE)
    assert r.returncode == 0, str(r)
    assert lake.bronze_rows() == [] and lake.quarantine_rows() == [] and lake.ledger() == []
    assert lake.version(lake.bronze_path) > old_version
    old = (spark.read.format("delta").option("versionAsOf", old_version).load(str(lake.bronze_path))
           .select("_source_file", "_line", "event_id", "n", "device.id", "_batch_id").collect())
    assert sorted(tuple(r) for r in old) == [r for r in rows]
    assert lake.run("status", SOURCE, "--json", "--all").json["schema_version"] is None
    lake.assert_valid()

    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("after reset")
    lake.assert_valid()
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("after reset, rerun")


# ---------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, message", [
    (["ingest", "nope", "--from", DAY1, "--to", DAY1], "unknown source 'nope'"),
    (["reprocess", "nope", "--from", DAY1, "--to", DAY1], "unknown source 'nope'"),
    (["status", "nope"], "unknown source 'nope'"),
    (["validate", "nope"], "unknown source 'nope'"),
    (["repair", "nope"], "unknown source 'nope'"),
    (["reset", "nope", "--confirm", "nope"], "unknown source 'nope'"),
    (["ingest", SOURCE, "--from", "2026-13-01", "--to", DAY2], "'2026-13-01' is not a date"),
    (["ingest", SOURCE, "--from", DAY1, "--to", "tomorrow"], "'tomorrow' is not a date"),
    (["ingest", SOURCE, "--date", "2026/01/01"], "'2026/01/01' is not a date"),
    (["reprocess", SOURCE, "--from", "01-01-2026", "--to", DAY2], "'01-01-2026' is not a date"),
    (["ingest", SOURCE, "--from", DAY2, "--to", DAY1], f"--to {DAY1} is before --from {DAY2}"),
    (["reprocess", SOURCE, "--from", DAY2, "--to", DAY1], f"--to {DAY1} is before --from {DAY2}"),
    (["ingest", SOURCE, "--from", DAY1], "give both --from and --to"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_exits_2_with_a_message_and_changes_nothing(tmp_path_factory, args, message):
    lake = _bad_input_lake(tmp_path_factory)
    before = snapshot(lake)
    lake.land(DAY2, "late.json", lines_for("late", 2))       # something a wrongly accepted run would load
    try:
        r = lake.run(*args)
        assert r.returncode == 2, str(r)
        assert message in r.stderr, str(r)
        assert "Traceback" not in r.stderr, str(r)
        assert snapshot(lake) == before
    finally:
        lake.path(DAY2, "late.json").unlink()


_shared: dict = {}


def _bad_input_lake(tmp_path_factory) -> Lake:
    """One loaded lake shared by the bad-input cases (none of them may change it)."""
    if "lake" not in _shared:
        lake = Lake(tmp_path_factory.mktemp("bad_input"))
        lake.standard_day(DAY1)
        lake.ingest_ok(DAY1, DAY2)
        _shared["lake"] = lake
    return _shared["lake"]


def test_lost_and_stale_quarantine_rows_are_found_and_repaired(tmp_path, spark):
    lake = loaded_lake(tmp_path)
    bad_file = lake.quarantine_rows()[0][0]
    sql(spark, f"DELETE FROM delta.`{lake.quarantine_path}` WHERE _source_file = '{bad_file}'")
    validate_fails_with(lake, "rows do not match the ledger (table or quarantine)", bad_file, "1 problem(s)")
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("lost quarantine rows reloaded")
    from pyspark.sql import functions as F

    copy = (spark.read.format("delta").load(str(lake.quarantine_path)).where(F.col("_source_file") == bad_file)
            .withColumn("_batch_id", F.lit("stale-batch")))
    copy.write.format("delta").mode("append").save(str(lake.quarantine_path))
    validate_fails_with(lake, "row(s) of an unknown batch", bad_file, "1 problem(s)")
    repair_then_repair_again(lake, 1)
    lake.assert_exactly_once("stale quarantine rows deleted")
