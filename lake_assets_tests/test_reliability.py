"""Reliability: ambiguous storage answers, duplicates from any cause, poison files and records.

Every scenario runs the real `lake` CLI as a subprocess (its own embedded engine, so it can be
pointed at a fault proxy in front of the session's local S3) and ends with the same invariant as
the exactly-once suite: each landed line exactly once in bronze or the quarantine, values equal,
read back with delta-rs as a second reader. Fast tests cover one case of each kind; `-m slow`
runs the rest.
"""

from __future__ import annotations

import uuid

import pytest

from lake_assets_tests.fault_proxy import FaultProxy
from lake_assets_tests.scenario_helpers import DAY1, DAY2, SOURCE, Lake, lines_for

BRONZE_COMMIT_1 = rf"/bronze/{SOURCE}/_delta_log/0+1\.json$"


@pytest.fixture(scope="module")
def spark():
    from lake_assets.engine import spark_session

    return spark_session()


def s3_lake(tmp_path, local_s3) -> Lake:
    """A lake whose tables live in a fresh bucket of the session's local S3 (landing stays local)."""
    warehouse = f"s3://lake-{uuid.uuid4().hex[:8]}"
    local_s3.create_buckets(warehouse)
    lake = Lake(tmp_path, warehouse=warehouse)
    lake.standard_day(DAY1)
    return lake


def bronze_commits(lake: Lake) -> list[tuple[int, str, str | None]]:
    return sorted((h["version"], h["operation"], h.get("userMetadata")) for h in lake.table(lake.bronze_path).history())


# ------------------------------------------------------------------ ambiguous commits (S3 applied, then 500)

def test_commit_applied_then_500_lands_once(tmp_path, local_s3):
    """S3 stores bronze's first data commit but answers 500; the engine retries, finds the version
    taken and commits the same rows again. The run finds its batch's commit twice in the history
    and keeps one copy of each row."""
    lake = s3_lake(tmp_path, local_s3)
    with FaultProxy(local_s3.endpoint) as proxy:
        proxy.fail_after_apply(BRONZE_COMMIT_1)
        r = lake.ingest(DAY1, AWS_ENDPOINT_URL=proxy.endpoint)
    assert proxy.faults, "the fault was never hit"
    assert r.returncode == 0, str(r)
    commits = bronze_commits(lake)
    batch = lake.ledger()[0]["batch_id"]
    data_commits = [c for c in commits if c[1] == "WRITE" and c[2] == batch]
    assert len(data_commits) == 2, f"expected the retried duplicate commit in the history: {commits}\n{r}"
    assert "its commit is in the history 2 time(s)" in r.stderr, str(r)
    lake.assert_exactly_once("commit applied then 500")
    lake.assert_valid()
    before = lake.versions()
    lake.ingest_ok(DAY1)
    assert lake.versions() == before, "a rerun after the repaired batch wrote again"


@pytest.mark.slow
def test_commit_applied_then_every_retry_answers_500(tmp_path, local_s3):
    """S3 stores the commit and answers 500 to it and to every retry, so the engine gives up with an
    error: the run looks for its own commit (the batch id in the commit metadata), finds it, and
    counts what landed instead of failing or writing again."""
    lake = s3_lake(tmp_path, local_s3)
    with FaultProxy(local_s3.endpoint) as proxy:
        proxy.fail_after_apply(BRONZE_COMMIT_1, times=100)
        r = lake.ingest(DAY1, AWS_ENDPOINT_URL=proxy.endpoint)
    assert len(proxy.faults) > 1, proxy.faults
    assert r.returncode == 0, str(r)
    assert "but its commit is in the table" in r.stderr, str(r)
    assert [c[1] for c in bronze_commits(lake)] == ["CREATE TABLE", "WRITE"]
    lake.assert_exactly_once("every retry answered 500")
    lake.assert_valid()


@pytest.mark.slow
def test_quarantine_and_replace_commits_applied_then_500(tmp_path, local_s3):
    """The same fault on the quarantine's first commit, then on the replace path (overwritten files)."""
    lake = s3_lake(tmp_path, local_s3)
    with FaultProxy(local_s3.endpoint) as proxy:
        proxy.fail_after_apply(rf"/bronze/{SOURCE}__quarantine/_delta_log/0{{20}}\.json$")
        lake.ingest_ok(DAY1, AWS_ENDPOINT_URL=proxy.endpoint)
        assert proxy.faults
        lake.assert_exactly_once("quarantine commit applied then 500")
        lake.land(DAY1, "a.json", lines_for("a2", 3, malformed_at=(2,)))
        version = lake.version(lake.bronze_path)
        proxy.fail_after_apply(rf"/bronze/{SOURCE}/_delta_log/0*{version + 1}\.json$")
        lake.ingest_ok(DAY1, AWS_ENDPOINT_URL=proxy.endpoint)
        assert len(proxy.faults) == 2
    lake.assert_exactly_once("replace commit applied then 500")
    lake.assert_valid()


# ------------------------------------------------------------------ duplicates from any cause

def _duplicate_rows_of(spark, lake: Lake, name: str) -> str:
    """Append a second copy of one file's bronze rows, as a buggy job would."""
    from lake_assets.core import tables

    uri = lake.uri(DAY1, name)
    copy = tables.read(spark, str(lake.bronze_path)).where(f"_source_file = {tables.sql_string(uri)}")
    tables.append(copy, str(lake.bronze_path), partition_by="_landing_date")
    return uri


def test_validate_reports_duplicate_keys_and_repair_removes_them(tmp_path, spark):
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    b = _duplicate_rows_of(spark, lake, "b.json")
    v = lake.run("validate", SOURCE)
    assert v.returncode == 1 and "4 duplicate row(s)" in v.stdout + v.stderr and b in v.stdout + v.stderr, str(v)
    r = lake.run("repair", SOURCE)
    assert r.returncode == 0 and "removed 4 duplicate row(s)" in r.stdout, str(r)
    lake.assert_exactly_once("after repair")
    lake.assert_valid()


@pytest.mark.slow
def test_reprocess_repairs_duplicates_from_any_cause(tmp_path, spark):
    """The replace path deletes every copy of a (file, line) before inserting, so a reprocess of a
    file whose rows were doubled leaves each line once (it used to update both copies)."""
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    _duplicate_rows_of(spark, lake, "a.json")
    _duplicate_rows_of(spark, lake, "c.json.gz")
    lake.ingest_ok(DAY1, reprocess=True)
    lake.assert_exactly_once("reprocess over duplicates")
    lake.assert_valid()
    lake.land(DAY1, "b.json", lines_for("b2", 2))     # and an overwritten file with doubled rows
    _duplicate_rows_of(spark, lake, "b.json")
    lake.ingest_ok(DAY1)
    lake.assert_exactly_once("overwrite over duplicates")
    lake.assert_valid()
