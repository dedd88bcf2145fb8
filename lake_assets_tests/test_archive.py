"""clean_source (Auto Loader cleanSource) through the `lake` CLI as real subprocesses: committed
files move to archive_to (or are deleted) after commit; a crash between commit and move loses and
duplicates nothing; `lake reprocess --from-archive` reads the archived files in place and replaces
their rows, which keep their landing URI."""

from __future__ import annotations

import pytest

from lake_assets_tests.scenario_helpers import DAY1, SOURCE, Lake, assert_exactly_once


def test_move_after_commit_survives_a_crash_and_reprocess_reads_the_archive(tmp_path):
    lake = Lake(tmp_path, clean_source="move", archive_to="archive", clean_source_retention_hours=0)
    lake.standard_day(DAY1)
    rows, bad = lake.expected()
    landed = lake.landed_files()

    crashed = lake.ingest(DAY1, LAKE_CRASH_AT="committed")  # after the ledger commit, before the move
    assert crashed.returncode == -9, str(crashed)
    assert lake.landed_files() == landed
    assert_exactly_once(lake, rows, bad, "crash between commit and move")

    rerun = lake.ingest_ok(DAY1)  # nothing to ingest again; the files move now
    assert rerun.json["records"] == 0 and lake.landed_files() == []
    archived = sorted((tmp_path / "land" / "archive").rglob("*.json*"))
    assert [p.relative_to(tmp_path / "land" / "archive").as_posix() for p in archived] == [
        p.relative_to(tmp_path / "land" / SOURCE).as_posix() for p in landed]
    assert_exactly_once(lake, rows, bad, "after the move")

    again = lake.run("reprocess", SOURCE, "--from", DAY1, "--to", DAY1, "--from-archive")
    assert again.returncode == 0 and again.json["records"] == len(rows), str(again)
    assert_exactly_once(lake, rows, bad, "reprocess from the archive")
    assert sorted((tmp_path / "land" / "archive").rglob("*.json*")) == archived  # read in place, not moved back

    plain = lake.run("reprocess", SOURCE, "--from", DAY1, "--to", DAY1)  # the landing is empty now
    assert plain.returncode == 0 and plain.json["records"] == 0
    assert_exactly_once(lake, rows, bad, "reprocess of an empty landing")
    lake.assert_valid()


@pytest.mark.parametrize("retention, gone", [(0, True), (24, False)])
def test_delete_after_the_retention(tmp_path, retention, gone):
    lake = Lake(tmp_path, clean_source="delete", clean_source_retention_hours=retention)
    lake.standard_day(DAY1)
    rows, bad = lake.expected()
    landed = lake.landed_files()
    lake.ingest_ok(DAY1)
    assert lake.landed_files() == ([] if gone else landed)
    assert_exactly_once(lake, rows, bad, f"delete, retention {retention} h")


def test_config_needs_archive_to_outside_the_source_path():
    from lake_assets.config import ConfigError, parse_config

    base = "landing: l\nwarehouse: w\nsources:\n  s:\n    path: s/\n    start_date: 2026-01-01\n"
    with pytest.raises(ConfigError, match="needs archive_to"):
        parse_config(base + "    clean_source: move\n")
    with pytest.raises(ConfigError, match="inside path"):
        parse_config(base + "    clean_source: move\n    archive_to: s/archive\n")


def test_on_s3_files_move_to_the_archive_and_reprocess_reads_them_there(tmp_path, buckets, local_s3):
    import json

    from deltalake import DeltaTable

    from lake_assets.config import load_config
    from lake_assets.core.bronze import ingest
    from lake_assets.core.delta_meta import storage_options
    from lake_assets.core.layout import Layout
    from lake_assets.engine import spark_session
    landing, warehouse = buckets
    path = str(Lake(tmp_path, warehouse, landing=landing, source="events", clean_source="move",
                    archive_to=f"{warehouse}/archive/events", clean_source_retention_hours=0).config)
    client = local_s3.client()
    keys = [f"events/2026/01/01/part-{i}.json" for i in range(3)]
    for i, key in enumerate(keys):
        client.put_object(Bucket=landing[5:], Key=key, Body=b"\n".join(json.dumps({"id": i * 10 + n}).encode()
                                                                      for n in range(4)))
    lake, spark = load_config(path), spark_session()
    first = ingest(spark, lake, lake.sources["events"], [DAY1], log=lambda _: None)
    assert (first.records, first.cleaned) == (12, 3)
    assert client.list_objects_v2(Bucket=landing[5:], Prefix="events/").get("KeyCount") == 0
    archived = [o["Key"] for o in client.list_objects_v2(Bucket=warehouse[5:], Prefix="archive/")["Contents"]]
    assert archived == [f"archive/{k}" for k in keys]
    again = ingest(spark, lake, lake.sources["events"], [DAY1], reprocess=True, from_archive=True, log=lambda _: None)
    assert again.records == 12 and again.write_modes == {"replace"}
    uri = Layout(lake.warehouse, "events").bronze
    frame = DeltaTable(uri, storage_options=storage_options(uri)).to_pandas()
    assert sorted(frame["id"]) == sorted(i * 10 + n for i in range(3) for n in range(4))  # once each
    assert set(frame["_source_file"]) == {f"{landing}/{k}" for k in keys}  # the landing URI, not the archive's
