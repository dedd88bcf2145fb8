"""`lake repair --rebuild-ledger` on a source with `clean_source: move` (the `lake` CLI as real
subprocesses): the ledger rebuilt from bronze's lineage knows the archived files as committed (their
archived version), so the next run loads nothing again, `lake validate` finds nothing, and `lake
reprocess --from-archive` still reads them in place and replaces their rows."""

from __future__ import annotations

from lake_assets_tests.scenario_helpers import DAY1, SOURCE, Lake, assert_exactly_once


def test_a_rebuilt_ledger_knows_archived_files_and_reprocess_from_archive_still_works(tmp_path):
    # on_overwrite fail: an archived file rebuilt under another version (the landing has none) would
    # read as overwritten and stop the reprocess (with ignore it would load nothing)
    lake = Lake(tmp_path, clean_source="move", archive_to="archive", clean_source_retention_hours=0,
                on_overwrite="fail")
    lake.standard_day(DAY1)
    rows, bad = lake.expected()
    landed = lake.landed_files()
    first = lake.ingest_ok(DAY1)
    assert first.json["records"] == len(rows) and lake.landed_files() == []
    archive = tmp_path / "land" / "archive"
    archived = sorted(archive.rglob("*.json*"))
    assert len(archived) == len(landed)
    before = {e["uri"]: e for e in lake.ledger()}

    rebuilt = lake.run("repair", SOURCE, "--rebuild-ledger")
    assert rebuilt.returncode == 0, str(rebuilt)
    assert_exactly_once(lake, rows, bad, "rebuilt ledger")
    after = {e["uri"]: e for e in lake.ledger()}
    assert {u: (e["etag"], e["size"], e["records"], e["malformed"], e["landing_date"]) for u, e in after.items()} == {
        u: (e["etag"], e["size"], e["records"], e["malformed"], e["landing_date"]) for u, e in before.items()}
    lake.assert_valid()

    versions = lake.versions()
    again = lake.ingest_ok(DAY1)
    assert again.json["records"] == 0 and lake.versions() == versions, "an archived file was loaded again"
    assert_exactly_once(lake, rows, bad, "run after the rebuild")

    reprocessed = lake.run("reprocess", SOURCE, "--from", DAY1, "--to", DAY1, "--from-archive")
    assert reprocessed.returncode == 0 and reprocessed.json["records"] == len(rows), str(reprocessed)
    assert_exactly_once(lake, rows, bad, "reprocess from the archive after the rebuild")
    assert sorted(archive.rglob("*.json*")) == archived  # read in place
    lake.assert_valid()


def test_a_crash_between_commit_and_move_then_a_rebuilt_ledger_moves_once_and_loads_once(tmp_path):
    lake = Lake(tmp_path, clean_source="move", archive_to="archive", clean_source_retention_hours=0)
    lake.standard_day(DAY1)
    rows, bad = lake.expected()
    landed = lake.landed_files()
    crashed = lake.ingest(DAY1, LAKE_CRASH_AT="committed")  # committed, not moved
    assert crashed.returncode == -9, str(crashed)
    rebuilt = lake.run("repair", SOURCE, "--rebuild-ledger")
    assert rebuilt.returncode == 0, str(rebuilt)
    assert_exactly_once(lake, rows, bad, "rebuilt ledger, files still in the landing")
    rerun = lake.ingest_ok(DAY1)
    assert rerun.json["records"] == 0 and lake.landed_files() == []  # moved now, not loaded again
    assert len(list((tmp_path / "land" / "archive").rglob("*.json*"))) == len(landed)
    assert_exactly_once(lake, rows, bad, "after the move")
    lake.assert_valid()
