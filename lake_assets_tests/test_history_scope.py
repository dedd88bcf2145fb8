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
