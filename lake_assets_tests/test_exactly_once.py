"""Exactly-once ingestion, end to end through the `lake` CLI as real subprocesses.

Every scenario ends with the same invariant (scenario_helpers.Lake.assert_exactly_once): bronze
holds each landed (file, line) exactly once with its values, the quarantine each malformed line
once, the ledger says committed for every landed file, and `lake validate` exits 0.

Fast (unmarked) tests keep to a few crash points and repetitions; `-m slow` runs every fault
point on both write paths, the random-kill loop and more concurrent repetitions.
"""

from __future__ import annotations

import json
import random

import pytest

from lake_assets.core import faults
from lake_assets_tests.engines import engine_config
from lake_assets_tests.scenario_helpers import DAY1, DAY2, SOURCE, Lake, kill_after, lines_for

POINTS = list(faults.POINTS)
# A first load of this data (a new table, malformed lines) passes every fault point; so does a
# re-ingest of overwritten files that bring a new field (schema change + replace path).


def first_load_lake(tmp_path, engine=None) -> Lake:
    lake = Lake(tmp_path, engine=engine)
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    return lake


def overwrite_files(lake: Lake, version: int = 2) -> None:
    """New content for two loaded files: a.json shrinks, gains a field and loses its malformed
    line; c.json.gz moves its malformed line. Values carry the version so stale rows show."""
    lake.land(DAY1, "a.json", lines_for(f"a{version}", 3, extra=f"v{version}"))
    lake.land(DAY1, "c.json.gz", lines_for(f"c{version}", 4, malformed_at=(4,)), gz=True)


def crash_then_recover(lake: Lake, point: str, context: str) -> None:
    crashed = lake.ingest(DAY1, DAY2, LAKE_CRASH_AT=point)
    assert crashed.returncode == -9, f"{context}: the run did not reach {point}: {crashed}"
    rerun = lake.ingest(DAY1, DAY2)
    assert rerun.returncode == 0, f"{context}: rerun after a crash at {point}: {rerun}"
    lake.assert_exactly_once(context)
    lake.assert_valid()


# ---------------------------------------------------------------------------------- crash safety

@pytest.mark.parametrize("point", ["claimed", "bronze_written"])
def test_crash_during_first_load_fast(tmp_path, point):
    lake = first_load_lake(tmp_path)
    crash_then_recover(lake, point, f"first load, crash at {point}")


def test_crash_during_reingest_of_overwritten_files_fast(tmp_path):
    lake = first_load_lake(tmp_path)
    lake.ingest_ok(DAY1, DAY2)
    overwrite_files(lake)
    crash_then_recover(lake, "quarantine_written", "replace, crash at quarantine_written")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["spark_jvm", "sail_cluster"])
@pytest.mark.parametrize("point", ["claimed", "table_evolved", "bronze_written"])
def test_crash_and_rerun_on_a_spark_connect_server(tmp_path, engine, point):
    # The killed client leaves the server running: the rerun talks to the same server.
    lake = first_load_lake(tmp_path, engine_config(engine))
    crash_then_recover(lake, point, f"{engine}: first load, crash at {point}")


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_crash_at_every_point_during_first_load(tmp_path, point):
    lake = first_load_lake(tmp_path)
    crash_then_recover(lake, point, f"first load, crash at {point}")
    # and the recovered lake keeps working: a later rerun adds nothing
    before = lake.versions()
    lake.ingest_ok(DAY1, DAY2)
    assert lake.versions() == before


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_crash_at_every_point_during_reingest_of_overwritten_files(tmp_path, point):
    lake = first_load_lake(tmp_path)
    lake.ingest_ok(DAY1, DAY2)
    overwrite_files(lake)
    crash_then_recover(lake, point, f"replace, crash at {point}")


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_two_crashes_in_a_row_then_recover(tmp_path, point):
    """A crash right after claiming (before anything is written), then a crash of the recovery run
    itself at every point (the recovery takes the replace path, over a table that does not exist
    yet), then a clean run."""
    lake = first_load_lake(tmp_path)
    first = lake.ingest(DAY1, DAY2, LAKE_CRASH_AT="claimed")
    assert first.returncode == -9, str(first)
    crash_then_recover(lake, point, f"crash at claimed, then at {point}")


@pytest.mark.slow
def test_random_kills_with_random_delays(tmp_path):
    """Kill `lake ingest` at a random moment (random sleeps at every fault point widen the
    windows), rerun cleanly, check; between iterations files are overwritten or added, so the
    loop covers first loads, appends of new files and replacements of changed ones."""
    rng = random.Random(20261120)
    lake = first_load_lake(tmp_path)
    killed = 0
    for i in range(12):
        if i:
            action = i % 3
            if action == 0:
                overwrite_files(lake, version=i)
            elif action == 1:
                lake.land(DAY2, f"new{i}.json", lines_for(f"n{i}", 3, malformed_at=(2,)))
            else:
                lake.land(DAY1, "b.json", lines_for(f"b{i}", rng.randint(1, 5), extra=f"x{i}"))
        proc = lake.start("ingest", SOURCE, "--from", DAY1, "--to", DAY2, LAKE_RANDOM_DELAY_MS=400)
        rc = kill_after(proc, rng.uniform(0.3, 2.5))
        killed += rc == -9
        assert rc in (0, -9), f"iteration {i}: rc={rc}"
        rerun = lake.ingest(DAY1, DAY2)
        assert rerun.returncode == 0, f"iteration {i}: {rerun}"
        lake.assert_exactly_once(f"iteration {i} (rc {rc})")
        lake.assert_valid()
    assert killed >= 3, f"only {killed} of 12 runs were killed mid-way; widen the kill window"


# ---------------------------------------------------------------------------------- idempotence

def test_rerun_is_a_no_op_and_reprocess_gives_the_same_rows(tmp_path):
    lake = first_load_lake(tmp_path)
    first = lake.ingest_ok(DAY1, DAY2)
    assert first.json["files"] == 4 and first.json["malformed"] == 2
    lake.assert_exactly_once("first load")
    rows, versions = sorted(lake.bronze_rows()), lake.versions()

    again = lake.ingest_ok(DAY1, DAY2)
    assert again.json["files"] == 0 and again.json["records"] == 0
    assert lake.versions() == versions, "a rerun with nothing new committed to a table"
    assert sorted(lake.bronze_rows()) == rows

    day1 = lake.run("reprocess", SOURCE, "--from", DAY1, "--to", DAY1)
    assert day1.returncode == 0, str(day1)
    assert day1.json["files"] == 3
    lake.assert_exactly_once("after reprocess")
    after = sorted(lake.bronze_rows())
    assert [r[:5] for r in after] == [r[:5] for r in rows], "reprocess changed values"
    old_batch = {r[0]: r[5] for r in rows}
    new_batch = {r[0]: r[5] for r in after}
    for uri in new_batch:
        if "/2026/01/01/" in uri:
            assert new_batch[uri] != old_batch[uri], f"{uri} was not reprocessed"
        else:
            assert new_batch[uri] == old_batch[uri], f"{uri} is outside the reprocessed range"
    lake.assert_valid()

    # the same through `ingest --reprocess`, over both days, twice
    for _ in range(2):
        lake.ingest_ok(DAY1, DAY2, reprocess=True)
        lake.assert_exactly_once("ingest --reprocess")
    assert [r[:5] for r in sorted(lake.bronze_rows())] == [r[:5] for r in rows]
    lake.assert_valid()


def test_overwritten_file_reprocess_replaces_its_rows(tmp_path):
    lake = first_load_lake(tmp_path)   # on_overwrite defaults to reprocess
    lake.ingest_ok(DAY1, DAY2)
    old = {r[:2] for r in lake.bronze_rows()}
    overwrite_files(lake)
    r = lake.ingest_ok(DAY1, DAY2)
    assert r.json["files"] == 2
    lake.assert_exactly_once("overwrite, reprocess")
    a = lake.uri(DAY1, "a.json")
    assert sorted(n for u, n, *_ in lake.bronze_rows() if u == a) == [1, 2, 3]   # lines 4, 5 gone
    assert all(e.startswith("a2-") for u, _, e, *_ in lake.bronze_rows() if u == a)
    assert not [q for q in lake.quarantine_rows() if q[0] == a], "a.json's old malformed line stayed"
    assert (a, 5) in old
    lake.assert_valid()


def test_overwritten_file_ignore_keeps_old_rows(tmp_path):
    lake = Lake(tmp_path, on_overwrite="ignore")
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    rows, quarantine, versions = sorted(lake.bronze_rows()), sorted(lake.quarantine_rows()), lake.versions()
    lake.land(DAY1, "a.json", lines_for("a2", 2))
    r = lake.ingest_ok(DAY1)
    assert r.json["files"] == 0
    assert sorted(lake.bronze_rows()) == rows and sorted(lake.quarantine_rows()) == quarantine
    assert lake.versions() == versions
    lake.assert_valid()


def test_overwritten_file_fail_names_the_file_and_changes_nothing(tmp_path):
    lake = Lake(tmp_path, on_overwrite="fail")
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    rows, quarantine, ledger, versions = (sorted(lake.bronze_rows()), sorted(lake.quarantine_rows()),
                                          lake.ledger(), lake.versions())
    a = lake.land(DAY1, "a.json", lines_for("a2", 2))
    lake.land(DAY1, "e.json", lines_for("e", 2))     # a new file in the same run is not loaded either
    r = lake.ingest(DAY1)
    assert r.returncode != 0, str(r)
    assert a in r.stderr and "overwritten" in r.stderr, str(r)
    assert sorted(lake.bronze_rows()) == rows and sorted(lake.quarantine_rows()) == quarantine
    assert lake.versions() == versions
    assert lake.ledger() == ledger


# ---------------------------------------------------------------------------------- concurrency

def _race(lake: Lake, reprocess: bool = False, delay_ms: int = 300) -> int:
    """Two `lake ingest` runs started together; both must succeed. Returns the files they loaded."""
    args = ["ingest", SOURCE, "--from", DAY1, "--to", DAY2] + (["--reprocess"] if reprocess else [])
    procs = [lake.start(*args, LAKE_RANDOM_DELAY_MS=delay_ms) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"rc={p.returncode}\n{out}\n{err[-3000:]}"
    return sum(json.loads(out.strip().splitlines()[-1])["files"] for out, _ in outs)


def test_two_concurrent_ingests_load_each_file_once(tmp_path):
    for rep in range(2):
        lake = first_load_lake(tmp_path / f"rep{rep}")
        files = _race(lake)
        assert files == 4, f"repetition {rep}: the two runs loaded {files} files between them, not 4"
        lake.assert_exactly_once(f"repetition {rep}")
        lake.assert_valid()


@pytest.mark.slow
def test_concurrent_ingests_many_repetitions_with_new_and_changed_files(tmp_path):
    lake = first_load_lake(tmp_path)
    for rep in range(8):
        if rep % 2:
            overwrite_files(lake, version=rep)
        else:
            lake.land(DAY2, f"r{rep}.json", lines_for(f"r{rep}", 3, malformed_at=(1,)))
        _race(lake, delay_ms=500)
        lake.assert_exactly_once(f"repetition {rep}")
        lake.assert_valid()
    for rep in range(3):
        _race(lake, reprocess=True, delay_ms=500)
        lake.assert_exactly_once(f"concurrent reprocess {rep}")
        lake.assert_valid()


# ---------------------------------------------------------------------------------- storage faults

def _truncated_gzip() -> bytes:
    import gzip
    return gzip.compress(b"".join(b'{"event_id": "z-%d", "n": %d}\n' % (i, i) for i in range(500)))[:60]


@pytest.mark.parametrize("content", [
    pytest.param(_truncated_gzip(), id="truncated"),                      # gzip raises EOFError
    pytest.param(b"\x1f\x8b\x08\x00" + bytes(range(200)), id="garbage"),  # gzip raises zlib.error
])
def test_corrupt_gzip_fails_that_file_and_the_rest_lands(tmp_path, content):
    lake = first_load_lake(tmp_path)
    bad = lake.land_raw(DAY1, "z.json.gz", content)
    r = lake.ingest(DAY1, DAY2)
    assert r.returncode == 1, str(r)
    assert list(r.json["failed"]) == [bad] and "gzip" in r.json["failed"][bad], str(r)
    assert r.json["files"] == 4
    lake.assert_exactly_once("corrupt gzip", failed={bad: "gzip"})
    lake.assert_valid()
    # a rerun tries the failed file again (and fails again), nothing else changes
    rows = sorted(lake.bronze_rows())
    again = lake.ingest(DAY1, DAY2)
    assert again.returncode == 1 and list(again.json["failed"]) == [bad], str(again)
    assert sorted(lake.bronze_rows()) == rows
    # once fixed, it loads
    lake.land(DAY1, "z.json.gz", lines_for("z", 2), gz=True)
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("gzip fixed")
    lake.assert_valid()


def _cli(lake: Lake, *args: str) -> int:
    from lake_assets import cli

    return cli.main(["--config", str(lake.config), *args])


@pytest.mark.embedded
def test_file_deleted_between_listing_and_reading(tmp_path, monkeypatch, capsys, spark):
    """The listing names a file that is gone when the batch reads it (deterministically: the
    listing is patched to add a FileInfo for a file that does not exist)."""
    import datetime as dt

    from lake_assets import storage

    lake = first_load_lake(tmp_path)
    ghost = str((lake.path(DAY1, "ghost.json")).resolve())
    real = storage.list_files

    def listing(prefix, start_after=None):
        yield from real(prefix, start_after)
        if prefix.rstrip("/").endswith(SOURCE):
            yield storage.FileInfo(ghost, 120, "deadbeef-78", dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc))

    monkeypatch.setattr(storage, "list_files", listing)
    rc = _cli(lake, "ingest", SOURCE, "--from", DAY1, "--to", DAY2)
    out = capsys.readouterr().out
    assert rc == 1, out
    result = json.loads(out.strip().splitlines()[-1])
    assert list(result["failed"]) == [ghost] and "no longer exists" in result["failed"][ghost]
    assert result["files"] == 4
    lake.assert_exactly_once("ghost file", failed={ghost: "no longer exists"})
    monkeypatch.undo()
    lake.assert_valid()
    lake.ingest_ok(DAY1, DAY2)          # the ghost is no longer listed; nothing to do
    lake.assert_exactly_once("ghost file, rerun", failed={ghost: "no longer exists"})


@pytest.mark.embedded
@pytest.mark.parametrize("cached", [True, False], ids=["parse-cached", "read-again"])
def test_file_deleted_after_the_scan_before_the_rows_are_read(tmp_path, monkeypatch, capsys, spark, cached):
    """The file vanishes after the scan pass (which read it) and before the rows pass. When the
    rows pass has the scan's parse (the embedded engine: same process) the version the scan read
    lands whole; when it must read the file again (a cluster's executors; here the parse cache is
    off) that file must be failed with the reason. Either way the rest of the batch lands."""
    from lake_assets.core import bronze

    if not cached:
        monkeypatch.setenv("LAKE_PARSE_CACHE_MB", "0")
    lake = first_load_lake(tmp_path)
    victim = lake.path(DAY1, "b.json")
    uri = str(victim.resolve())
    content = victim.read_bytes()
    real = bronze.checkpoint

    def checkpoint(point, files=()):
        if point == "scanned" and victim.exists():
            victim.unlink()
        real(point, files)

    monkeypatch.setattr(bronze, "checkpoint", checkpoint)
    try:
        rc = _cli(lake, "ingest", SOURCE, "--from", DAY1, "--to", DAY2)
    except Exception as exc:  # noqa: BLE001 - reported below as the failure
        pytest.fail(f"ingest raised instead of failing the vanished file: {type(exc).__name__}: {str(exc)[:500]}")
    out = capsys.readouterr().out
    if cached:
        assert rc == 0, out
        victim.write_bytes(content)  # what the scan read: its rows must all be there, once
        lake.assert_exactly_once("vanished after scan, parse cached")
    else:
        assert rc == 1, out
        lake.assert_exactly_once("vanished after scan", failed={uri: "no longer exists"})


def test_overwritten_file_that_fails_then_is_fixed_is_not_duplicated(tmp_path):
    """A loaded file is overwritten with an unreadable version (failed in the ledger; its old rows
    stay), then fixed: the fixed version must replace the old rows, not be appended beside them."""
    lake = first_load_lake(tmp_path)
    lake.ingest_ok(DAY1, DAY2)
    c = lake.land_raw(DAY1, "c.json.gz", _truncated_gzip())
    r = lake.ingest(DAY1, DAY2)
    assert r.returncode == 1 and list(r.json["failed"]) == [c], str(r)
    lake.land(DAY1, "c.json.gz", lines_for("c3", 2), gz=True)
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("overwritten, failed, fixed")
    lake.assert_valid()


def test_fail_on_new_columns_for_an_overwritten_file_then_accept_is_not_duplicated(tmp_path):
    """failOnNewColumns refuses an overwritten file that brings a new field (the file is marked
    failed, its old rows stay); after `lake schema accept` the same file loads — replacing its old
    rows, not beside them."""
    lake = Lake(tmp_path, schema_evolution_mode="failOnNewColumns")
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    a = lake.land(DAY1, "a.json", lines_for("a2", 3, extra="new field"))
    r = lake.ingest(DAY1)
    assert r.returncode == 2 and "extra" in r.stderr, str(r)
    accept = lake.run("schema", "accept", SOURCE)
    assert accept.returncode == 0, str(accept)
    lake.ingest_ok(DAY1)
    lake.assert_exactly_once("failOnNewColumns, accepted")
    assert sorted(n for u, n, *_ in lake.bronze_rows() if u == a) == [1, 2, 3]
    lake.assert_valid()


def test_fail_on_new_columns_during_reprocess_then_accept_is_not_duplicated(tmp_path):
    lake = Lake(tmp_path, schema_evolution_mode="failOnNewColumns")
    lake.land(DAY1, "a.json", lines_for("a", 3))
    lake.ingest_ok(DAY1)
    lake.land(DAY1, "b.json", lines_for("b", 2, extra="new field"))
    r = lake.ingest(DAY1, reprocess=True)          # a (committed, reprocessed) + b (new field)
    assert r.returncode == 2, str(r)
    assert lake.run("schema", "accept", SOURCE).returncode == 0
    lake.ingest_ok(DAY1)
    lake.assert_exactly_once("reprocess refused, accepted, rerun")
    lake.assert_valid()
