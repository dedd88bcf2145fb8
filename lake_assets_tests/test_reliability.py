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


pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


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


@pytest.mark.slow
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


# ------------------------------------------------------------------ per-file isolation

def assert_nothing_processing(lake: Lake) -> None:
    stuck = [e["uri"] for e in lake.ledger() if e["status"] == "processing"]
    assert not stuck, f"claims left processing after the run ended: {stuck}"


def test_a_failing_file_fails_alone_and_the_rest_lands(tmp_path):
    """An error while loading a batch fails the batch's files in the ledger and retries them one by
    one: only the poison file stays failed (with its reason and attempts), the others and the later
    batches land, and no claim stays `processing`."""
    lake = Lake(tmp_path, max_files_per_run=2)
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    b = lake.uri(DAY1, "b.json")
    r = lake.ingest(DAY1, DAY2, LAKE_FAIL_AT="scanned:b.json")
    assert r.returncode == 1, str(r)
    assert list(r.json["failed"]) == [b] and "InjectedFault" in r.json["failed"][b], str(r)
    assert r.json["files"] == 3
    assert f"1 file(s) failed (ledger status failed; a rerun tries them again): {b}: InjectedFault" in r.stderr, str(r)
    lake.assert_exactly_once("poison file", failed={b: "InjectedFault"})
    assert_nothing_processing(lake)
    assert {e["uri"]: e["attempts"] for e in lake.ledger()}[b] == 2   # in its batch, then alone
    lake.assert_valid()
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("poison file fixed")


@pytest.mark.slow
def test_a_failure_after_the_schema_only_commit_is_harmless_to_later_runs(tmp_path):
    """A file with a new field fails right after the table's schema-only commit added the field:
    later runs load known-shape files, and the failed file too."""
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    x = lake.land(DAY2, "x.json", lines_for("x", 3, extra={"deep": {"k": 1}}))
    r = lake.ingest(DAY2, LAKE_FAIL_AT="table_evolved")
    assert r.returncode == 1 and list(r.json["failed"]) == [x], str(r)
    assert "extra" in lake.table(lake.bronze_path).schema().to_arrow().names, "the schema-only commit was not made"
    assert_nothing_processing(lake)
    lake.land(DAY2, "k.json", lines_for("k", 2))
    lake.ingest_ok(DAY2, LAKE_FAIL_AT="table_evolved")
    lake.assert_exactly_once("after a failure past the schema-only commit")
    lake.assert_valid()


# ------------------------------------------------------------------ keys S3 allows

ODD_NAMES = ["q?x=1.json", "hash#frag.json", "pct%20lit.json", "plus+sign.json", "with space.json",
             "ünï-çødé.json", "quote'back\\slash.json"]


def test_every_key_s3_allows_is_read_on_s3(tmp_path, local_s3, buckets):
    """Keys with ?, #, %, +, spaces, unicode, quotes and backslashes: listed, read, ingested and
    recorded under their exact URI (one parser, storage.split_uri; nothing URL-decoded)."""
    import boto3

    from lake_assets import storage

    landing, _ = buckets
    bucket = storage.split_uri(landing)[0]
    client = boto3.client("s3")
    uris = {}
    for i, name in enumerate(ODD_NAMES):
        key = f"{SOURCE}/2026/01/01/{name}"
        client.put_object(Bucket=bucket, Key=key, Body=f'{{"event_id": "k{i}", "n": {i}}}\n'.encode())
        uris[f"s3://{bucket}/{key}"] = i
    listed = {f.uri for f in storage.list_files(f"{landing}/{SOURCE}")}
    assert listed == set(uris)
    for uri in uris:
        assert storage.exists(uri) and storage.read_bytes(uri).startswith(b'{"event_id"')
    lake = Lake(tmp_path, landing=landing)   # the landing on S3, the tables local
    r = lake.run("ingest", SOURCE, "--from", DAY1, "--to", DAY1)
    assert r.returncode == 0 and r.json["files"] == len(ODD_NAMES), f"{lake.config}\n{r}"
    got = {(row["_source_file"], int(row["n"])) for row in lake.frame(lake.bronze_path).to_dict("records")}
    assert got == set(uris.items())
    assert {e["uri"]: e["status"] for e in lake.ledger()} == {u: "committed" for u in uris}


@pytest.mark.slow
def test_every_key_s3_allows_is_read_locally(tmp_path):
    lake = Lake(tmp_path)
    for i, name in enumerate(ODD_NAMES):
        lake.land(DAY1, name, lines_for(f"odd{i}", 2))
    r = lake.ingest_ok(DAY1)
    assert r.json["files"] == len(ODD_NAMES)
    lake.assert_exactly_once("odd local names")
    lake.assert_valid()


# ------------------------------------------------------------------ poison records

def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


def test_dotted_names_deep_nesting_and_integers_past_bigint(tmp_path):
    """Keys with dots at any depth land in their own columns (quoted, never struct access), a dotted
    key beside a struct of the same prefix keeps both values, a record nested past the limit is
    quarantined with the reason, and an integer past BIGINT is rescued verbatim while the other
    rows keep their exact BIGINT values. Every line lands exactly once, in bronze or quarantine."""
    import json

    from lake_assets.core.records import MAX_NESTING

    lake = Lake(tmp_path)
    lines = [
        {"event_id": "p-1", "a": {"b": 10}, "a.b": 20, "CodePipeline.job": {"id": "j1", "data.x": 1},
         "big": 9223372036854775807},
        {"event_id": "p-2", "a": {"b": 11}, "a.b": 21, "CodePipeline.job": {"id": "j2"}, "big": -9223372036854775808},
        {"event_id": "p-3", "deep": _nested(MAX_NESTING + 400)},
        {"event_id": "p-4", "big": 99999999999999999999, "nest": _nested(MAX_NESTING - 2)},
        {"event_id": "p-5", "big": 5, "a": {"b": 12, "c.d": {"e": 3}}},
    ]
    uri = lake.land(DAY1, "poison.json", lines)
    lake.land(DAY1, "plain.json", lines_for("k", 2))   # a known-shape file in the same batch
    r = lake.ingest_ok(DAY1)
    assert r.json["malformed"] == 1, str(r)
    df = lake.frame(lake.bronze_path)
    got = {int(row["_line"]): row for row in df.to_dict("records") if row["_source_file"] == uri}
    assert sorted(got) == [1, 2, 4, 5]
    assert [(got[n]["a.b"], got[n]["a"]["b"]) for n in (1, 2)] == [(20, 10), (21, 11)]
    assert got[1]["CodePipeline.job"] == {"id": "j1", "data.x": 1}
    assert got[5]["a"]["c.d"] == {"e": 3}
    # BIGINT stays exact (not DOUBLE; read through Arrow, as pandas would make the column float);
    # the integer past it is rescued verbatim
    from deltalake import QueryBuilder

    import pyarrow as pa

    rows = pa.table(QueryBuilder().register("t", lake.table(lake.bronze_path))
                    .execute(f"select _line, big from t where _source_file = '{uri}'").read_all()).to_pylist()
    big = {r["_line"]: r["big"] for r in rows}
    assert big == {1: 9223372036854775807, 2: -9223372036854775808, 4: None, 5: 5}
    assert json.loads(got[4]["_rescued_data"])["big"] == 99999999999999999999
    quarantine = {int(q["_line"]): q for q in lake.frame(lake.quarantine_path).to_dict("records")}
    assert list(quarantine) == [3] and f"nested deeper than {MAX_NESTING} levels" in quarantine[3]["_error"]
    keys = [(row["_source_file"], int(row["_line"])) for row in df.to_dict("records")]
    assert len(keys) == len(set(keys)) == 6
    assert {e["status"] for e in lake.ledger()} == {"committed"}
    lake.assert_valid()


def test_a_rescued_dotted_key_is_backtick_quoted():
    """The rescued path notation cannot be confused with a dotted key: a key holding a dot is one
    backtick-quoted segment."""
    from pyspark.sql import types as T

    from lake_assets.core.records import Fitter

    schema = T.StructType([T.StructField("a", T.StructType([T.StructField("x", T.LongType())]))])
    _, rescued, _ = Fitter(schema).fit({"a": {"x": 1, "b": 2, "b.c": 3, "q`d.e": 4}, "a.b": 5})
    assert rescued == {"a.b": 2, "a.`b.c`": 3, "a.`q``d.e`": 4, "`a.b`": 5}


def test_number_rules_match_python_json_on_random_integers_and_decimals():
    """Property test (random loop, fixed seed): what parse_line reads equals Python's json; an
    integer fits BIGINT exactly when it is within ±2^63 and is otherwise rescued with its exact
    digits (through rescued_json); a JSON decimal fits DOUBLE as the same float json reads."""
    import json
    import random

    from pyspark.sql import types as T

    from lake_assets.core.records import Fitter, parse_line, rescued_json

    rng = random.Random(12)
    fitter = Fitter(T.StructType([T.StructField("i", T.LongType()), T.StructField("d", T.DoubleType())]))
    for _ in range(3000):
        bits = rng.choice([8, 31, 53, 62, 63, 64, 65, 100, 200])
        i = rng.randrange(-2**bits, 2**bits)
        d = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-300, 300)
        text = f'{{"i": {i}, "d": {json.dumps(d)}, "t": {rng.randint(0, 9)}.{rng.randint(0, 10**17)}}}'
        parsed = parse_line(text)
        assert parsed == json.loads(text), text
        clean, rescued, _ = fitter.fit(parsed)
        if -2**63 <= i < 2**63:
            assert clean["i"] == i and "i" not in rescued, text
        else:
            assert "i" not in clean and json.loads(rescued_json(rescued, "f"))["i"] == i, text
        assert clean["d"] == json.loads(text)["d"], text


# ------------------------------------------------------------------ lost, restored, unreadable ledger

def _loaded(tmp_path) -> Lake:
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2, malformed_at=(1,)))
    lake.ingest_ok(DAY1, DAY2)
    return lake


def test_a_lost_ledger_is_rebuilt_from_bronze_lineage_not_loaded_twice(tmp_path):
    import shutil

    lake = _loaded(tmp_path)
    shutil.rmtree(lake.ledger_path)
    lake.land(DAY1, "e.json", lines_for("e", 2))      # and a new file, which loads
    r = lake.ingest_ok(DAY1, DAY2)
    assert r.json["files"] == 1, str(r)
    assert "the ledger did not know 4 file(s) whose rows are in bronze" in r.stderr, str(r)
    lake.assert_exactly_once("lost ledger")
    lake.assert_valid()


@pytest.mark.slow
def test_an_older_restored_ledger_does_not_duplicate_later_loads(tmp_path):
    import shutil

    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    shutil.copytree(lake.ledger_path, tmp_path / "ledger-backup")
    lake.land(DAY2, "d.json", lines_for("d", 3))
    lake.ingest_ok(DAY1, DAY2)
    shutil.rmtree(lake.ledger_path)
    shutil.copytree(tmp_path / "ledger-backup", lake.ledger_path)    # restored from before d.json
    r = lake.ingest_ok(DAY1, DAY2)
    assert r.json["files"] == 0 and "did not know 1 file(s)" in r.stderr, str(r)
    lake.assert_exactly_once("restored ledger")
    lake.assert_valid()


@pytest.mark.slow
def test_an_unreadable_ledger_names_repair_rebuild_ledger(tmp_path):
    lake = _loaded(tmp_path)
    bronze_before = sorted(lake.bronze_rows())
    for log in (lake.ledger_path / "_delta_log").glob("*.json"):
        log.write_text("this is not a delta log\n")
    r = lake.ingest(DAY1, DAY2)
    assert r.returncode != 0 and f"lake repair {SOURCE} --rebuild-ledger" in r.stderr, str(r)
    assert sorted(lake.bronze_rows()) == bronze_before
    fixed = lake.run("repair", SOURCE, "--rebuild-ledger")
    assert fixed.returncode == 0 and "rebuilt 4 entr(ies) from bronze's lineage" in fixed.stdout, str(fixed)
    assert list(lake.ledger_path.parent.glob("ledger.replaced-*/_delta_log/*.json")), "the old ledger was not kept"
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("rebuilt ledger")
    lake.assert_valid()


# ------------------------------------------------------------------ on_corrupt: fail | skip | salvage

def _truncated_gzip(lines: int, keep: float) -> tuple[bytes, list[str]]:
    import gzip
    import json

    text = [json.dumps({"event_id": f"z-{i}", "n": i, "device": {"id": "dev-z"}}) for i in range(1, lines + 1)]
    data = gzip.compress(("\n".join(text) + "\n").encode())
    return data[:int(len(data) * keep)], text


def test_on_corrupt_salvage_loads_the_readable_records_of_a_truncated_gzip(tmp_path):
    lake = Lake(tmp_path, on_corrupt="salvage")
    lake.standard_day(DAY1)
    damaged, text = _truncated_gzip(2000, 0.6)
    z = lake.land_raw(DAY1, "z.json.gz", damaged)
    r = lake.ingest_ok(DAY1)
    assert f"{z}: salvaged:" in r.stderr, str(r)
    rows = sorted((int(row["_line"]), row["event_id"]) for row in lake.frame(lake.bronze_path).to_dict("records")
                  if row["_source_file"] == z)
    cut = [int(q["_line"]) for q in lake.frame(lake.quarantine_path).to_dict("records") if q["_source_file"] == z]
    assert len(rows) > 1000, f"only {len(rows)} of 2000 lines salvaged"
    assert rows == [(i, f"z-{i}") for i in range(1, len(rows) + 1)], "the salvaged lines are not the file's first lines"
    assert cut in ([], [len(rows) + 1]), f"the cut last line should be quarantined, got {cut}"
    entry = {e["uri"]: e for e in lake.ledger()}[z]
    assert entry["status"] == "committed" and entry["records"] == len(rows) and "salvaged" in entry["error"]
    others = {e["uri"]: e["status"] for e in lake.ledger() if e["uri"] != z}
    assert set(others.values()) == {"committed"} and len(others) == 3
    lake.assert_valid()
    before = lake.versions()
    lake.ingest_ok(DAY1)
    assert lake.versions() == before, "a salvaged file was loaded again"


@pytest.mark.slow
def test_on_corrupt_skip_records_the_file_and_keeps_the_run_green(tmp_path):
    lake = Lake(tmp_path, on_corrupt="skip")
    lake.standard_day(DAY1)
    z = lake.land_raw(DAY1, "z.json.gz", _truncated_gzip(500, 0.3)[0])
    r = lake.ingest_ok(DAY1)
    assert "1 corrupt file(s) skipped" in r.stderr and z in r.stderr, str(r)
    entry = {e["uri"]: e for e in lake.ledger()}[z]
    assert entry["status"] == "skipped" and "gzip" in entry["error"] and entry["landing_date"] == DAY1
    assert not [row for row in lake.bronze_rows() if row[0] == z]
    before = lake.versions()
    lake.ingest_ok(DAY1)
    assert lake.versions() == before, "a skipped file was retried although it did not change"
    lake.land(DAY1, "z.json.gz", lines_for("z", 3), gz=True)     # fixed: it loads
    lake.ingest_ok(DAY1)
    lake.assert_exactly_once("skipped file fixed")
    lake.assert_valid()


# ------------------------------------------------------------------ hostile inputs that already pass

@pytest.mark.slow
def test_hostile_corpus_lands_exactly_once(tmp_path):
    """CRLF lines, duplicate keys, a 2 MB line, a 5,000-key record, SQL in keys and values, a gzip
    without .gz, a multi-member gzip, an empty file and blank lines: each line once, values equal."""
    import gzip
    import json

    from lake_assets_tests.scenario_helpers import record

    lake = Lake(tmp_path)
    crlf = "".join(json.dumps(record("crlf", i)) + "\r\n" for i in range(1, 4)).encode()
    lake.land_raw(DAY1, "crlf.json", crlf)
    dup = '{"event_id": "dup-1", "n": 0, "n": 1, "device": {"id": "dev-dup"}}\n'
    lake.land_raw(DAY1, "dupkeys.json", dup.encode())
    lake.land(DAY1, "big-line.json", [record("big", 1, blob="x" * 2_000_000), record("big", 2)])
    lake.land(DAY1, "wide.json", [record("wide", 1, wide={f"k{i}": i for i in range(5000)})])
    lake.land(DAY1, "sql.json", [record("sql", 1, **{"'; DROP TABLE t; --": "x' OR '1'='1", "a`b": 1})])
    lake.land_raw(DAY1, "gzip-no-suffix.json", gzip.compress(json.dumps(record("gz", 1)).encode() + b"\n"))
    members = b"".join(gzip.compress(json.dumps(record("mm", i)).encode() + b"\n") for i in range(1, 4))
    lake.land_raw(DAY1, "multi-member.json.gz", members)
    lake.land_raw(DAY1, "empty.json", b"")
    lake.land(DAY1, "blanks.json", ["", record("bl", 2), "   ", record("bl", 4)])
    lake.ingest_ok(DAY1)
    lake.assert_exactly_once("hostile corpus")
    lake.assert_valid()
    before = lake.versions()
    lake.ingest_ok(DAY1)
    assert lake.versions() == before
