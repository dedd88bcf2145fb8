"""A run's cost does not grow with history: with dated keys it lists only its days' folders and
reads and merges only its days' ledger rows; ledgers made before the ledger was partitioned keep
working; `lake status` is summarised by the engine. (benchmarks/history_cost.py times it.)"""

from __future__ import annotations

import json

import pytest

from lake_assets import storage
from lake_assets.core import discovery, tables
from lake_assets.core.ledger import SCHEMA, Ledger
from lake_assets_tests.scenario_helpers import DAY1, DAY2, SOURCE, Lake, lines_for


pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


def put(landing: str, key: str) -> str:
    uri = f"{landing}/{key}"
    storage.write_bytes(uri, b'{"a": 1}\n')
    return uri


def test_a_run_lists_only_its_days_folders_when_keys_carry_dates(buckets, monkeypatch):
    landing, _ = buckets
    monkeypatch.setattr(discovery, "HEAD_KEYS", 3)   # a "large" prefix without landing 1,000 objects
    days = {f"2026-01-0{d}": [put(landing, f"src/2026/01/0{d}/f{i}.json") for i in range(2)] for d in (1, 2, 3)}
    files, dated = discovery.list_days(f"{landing}/src", {"2026-01-02"})
    assert dated and sorted(f.uri for f in files) == days["2026-01-02"]
    files, dated = discovery.list_days(f"{landing}/src", {"2026-01-02", "2026-01-09"})   # an empty day
    assert dated and sorted(f.uri for f in files) == days["2026-01-02"]

    # a key outside the layout, sorting after the date folders: everything is listed
    stray = put(landing, "src/manifest.json")
    files, dated = discovery.list_days(f"{landing}/src", {"2026-01-02"})
    assert not dated and sorted(f.uri for f in files) == sorted([stray, *sum(days.values(), [])])


class ListRequests:
    """Counts the ListObjectsV2 requests this thread's S3 client sends."""

    def __enter__(self):
        self.count = 0
        storage.s3_client().meta.events.register("before-call.s3.ListObjectsV2", self._seen)
        return self

    def _seen(self, **kwargs):
        self.count += 1

    def __exit__(self, *exc):
        storage.s3_client().meta.events.unregister("before-call.s3.ListObjectsV2", self._seen)


def test_days_are_listed_in_ranges_with_the_fewest_requests(buckets, monkeypatch):
    """The first page, then one ranged listing per run of consecutive days; the key past the date folders
    is probed only when the last range stopped at a later date folder (`lake status`'s last 7 days and a
    sensor's run for today need 2 requests, however many days)."""
    landing, _ = buckets
    monkeypatch.setattr(discovery, "HEAD_KEYS", 3)
    days = {f"2026-01-{d:02d}": [put(landing, f"src/2026/01/{d:02d}/f{i}.json") for i in range(2)]
            for d in (1, 2, 3, 4, 5, 9)}
    put(landing, "src/2026/01/03x/not-a-day.json")   # between date folders, outside the layout: not listed
    cases = [({"2026-01-09"}, 2), ({"2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09"}, 2),
             ({"2026-01-02"}, 3), ({"2026-01-02", "2026-01-03", "2026-01-04"}, 3),
             ({"2026-01-01", "2026-01-04", "2026-01-09"}, 4), ({"2026-01-07"}, 3)]
    for wanted, requests in cases:
        with ListRequests() as calls:
            files, dated = discovery.list_days(f"{landing}/src", wanted)
        assert dated and sorted(f.uri for f in files) == sorted(u for d in wanted for u in days.get(d, [])), wanted
        assert calls.count == requests, wanted

    stray = put(landing, "src/zz-manifest.json")   # past the date folders, seen by the last range itself
    with ListRequests() as calls:
        files, dated = discovery.list_days(f"{landing}/src", {"2026-01-09"})
    assert not dated and stray in {f.uri for f in files} and len(files) == 14


def test_a_local_listing_is_in_key_order_and_starts_after(tmp_path):
    """Local folders list as S3 orders keys (a folder sorts as its name + '/'), and StartAfter skips
    what sorts before it without entering those folders."""
    for key in ["a/1", "a-b/2", "a/x/3", "z", ".hidden", "a/.hidden"]:
        storage.write_bytes(str(tmp_path / key), b"x")
    listed = lambda after=None: [f.uri[len(str(tmp_path)) + 1:] for f in storage.list_files(str(tmp_path), after)]  # noqa: E731
    assert listed() == ["a-b/2", "a/1", "a/x/3", "z"] == sorted(listed())
    assert listed(str(tmp_path / "a-b/2")) == ["a/1", "a/x/3", "z"]
    assert listed(str(tmp_path / "a/1")) == ["a/x/3", "z"]
    assert listed(str(tmp_path / "a:")) == ["z"]


def test_a_small_or_undated_prefix_is_listed_whole(buckets):
    landing, _ = buckets
    dated_uris = [put(landing, f"src/2026/01/0{d}/f.json") for d in (1, 2)]
    files, dated = discovery.list_days(f"{landing}/src", {"2026-01-01"})
    assert dated and sorted(f.uri for f in files) == dated_uris   # under a page: one listing is all
    undated = put(landing, "src/loose.json")
    files, dated = discovery.list_days(f"{landing}/src", {"2026-01-01"})
    assert not dated and sorted(f.uri for f in files) == sorted([*dated_uris, undated])


def test_new_ledgers_are_partitioned_by_landing_date_and_read_by_day(tmp_path, spark):
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    lake.ingest_ok(DAY1, DAY2)
    assert lake.table(lake.ledger_path).metadata().partition_columns == ["landing_date"]
    day2 = Ledger(spark, str(lake.ledger_path), {DAY2}).entries()
    assert list(day2) == [lake.uri(DAY2, "d.json")] and day2[lake.uri(DAY2, "d.json")].records == 2
    assert Ledger(spark, str(lake.ledger_path)).entries([lake.uri(DAY1, "b.json")])[lake.uri(DAY1, "b.json")] \
        .records == 4
    lake.assert_exactly_once("partitioned ledger")


def test_a_ledger_made_before_partitioning_keeps_working(tmp_path, spark):
    lake = Lake(tmp_path)
    tables.add_columns(spark, str(lake.ledger_path), SCHEMA)   # how ledgers were created before
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    lake.ingest_ok(DAY2)
    lake.land(DAY1, "b.json", lines_for("b2", 2))   # an overwrite: replaced through the day-scoped MERGE
    lake.ingest_ok(DAY1, DAY2)
    assert lake.table(lake.ledger_path).metadata().partition_columns == []
    assert sorted(e["landing_date"] for e in lake.ledger()) == [DAY1, DAY1, DAY1, DAY2]
    lake.assert_exactly_once("unpartitioned ledger")
    lake.assert_valid()


def test_status_is_summarised_by_the_engine(tmp_path):
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)
    lake.ingest_ok(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    lake.land(DAY1, "b.json", lines_for("b2", 3))   # changed since it was committed: pending again
    r = lake.run("status", SOURCE, "--json", "--from", DAY1, "--to", DAY2)
    assert r.returncode == 0, str(r)
    status = json.loads(r.stdout)
    assert status["files"] == {"committed": 3, "pending": 2, "skipped_not_data": 0}
    assert status["records"] == 5 + 4 + 3 - 2   # two malformed lines are quarantined, not records
    assert status["malformed"] == 2
    assert status["last_batch"] and status["last_commit"].endswith("+00:00")
