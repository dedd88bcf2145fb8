"""Write-audit-publish per day through a real Dagster instance: a range run records each day's own
facts and check results, a day whose check ERRORs never reaches silver or gold while the other
days do, and silver/gold follow bronze by declarative automation with nobody clicking."""

from dagster import AssetCheckKey, AssetKey, DagsterInstance, build_sensor_context, evaluate_automation_conditions
from dagster._core.storage.tags import (ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG,
                                       AUTOMATION_CONDITION_TAG)

from lake_assets_tests.scenario_helpers import Lake, read_delta

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
BRONZE, SILVER, GOLD = AssetKey(["bronze", "ev"]), AssetKey(["silver", "evs"]), AssetKey(["gold", "per_day"])
SILVER_YAML = """\
  evs: {from: ev, select: [id, n], mode: append}
"""
GOLD_YAML = """\
  per_day: {from: [evs], sql: "SELECT count(*) AS events FROM evs"}
"""


def _lake(tmp_path, buckets) -> tuple:
    """(Definitions, Lake) over a fresh landing and warehouse bucket."""
    from lake_assets.definitions import build_definitions

    landing, warehouse = buckets
    lake = Lake(tmp_path, warehouse, landing=landing, source="ev", checks={}, silver=SILVER_YAML, gold=GOLD_YAML)
    return build_definitions(str(lake.config)), lake


def _latest(instance, key, day):
    from dagster import AssetRecordsFilter

    found = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1).records
    return found[0].asset_materialization if found else None


def _check(instance, name: str, day: str):
    records = instance.event_log_storage.get_asset_check_execution_history(AssetCheckKey(BRONZE, name), limit=100)
    for r in records:  # newest first
        evaluation = r.event.dagster_event.event_specific_data
        if evaluation.partition == day:
            return evaluation
    return None


def _automation_tick(defs, instance, cursor=None):
    """One tick of the automation conditions; the runs it requests are executed (as the daemon would)."""
    tick = evaluate_automation_conditions(defs, instance, cursor=cursor)
    job = defs.resolve_implicit_global_asset_job_def()
    requested = sorted((key.to_user_string(), day) for key in (SILVER, GOLD) for day in tick.get_requested_partitions(key))
    for day in sorted({day for _, day in requested}):   # one run per day, as the daemon launches them
        keys = [AssetKey(name.split("/")) for name, d in requested if d == day]
        assert job.execute_in_process(instance=instance, asset_selection=keys, partition_key=day,
                                      tags={AUTOMATION_CONDITION_TAG: "true"}).success
    return requested, tick.cursor


def _run_range(defs, instance, first, last, selection=None):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=selection,
                                  tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})


def test_range_run_records_each_day_and_blocks_only_the_bad_day(tmp_path, buckets):
    defs, lake = _lake(tmp_path, buckets)
    lake.land(DAYS[0], "a.json", [{"id": 1, "n": 1}, {"id": 2, "n": 2}])
    lake.land(DAYS[0], "b.json", [{"id": 3, "n": 3}])
    lake.land(DAYS[1], "a.json", [{"id": 4, "n": "four"}, {"id": 5, "n": "five"}, {"id": 6, "n": 6}])
    lake.land(DAYS[2], "a.json", [{"id": 7, "n": 7}])
    instance = DagsterInstance.ephemeral()
    requested, cursor = _automation_tick(defs, instance)
    assert requested == []   # the daemon's first tick: nothing to do yet

    result = _run_range(defs, instance, DAYS[0], DAYS[2])
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failure] == ["silver__evs"]
    message = failure[0].step_failure_data.user_failure_data.description
    assert "2026-01-02" in message and "66.7 % rows rescued" in message and "n 2" in message

    # bronze: one materialization per day, each with that day's own facts
    facts = {d: _latest(instance, BRONZE, d).metadata for d in DAYS}
    assert [(facts[d]["files"].value, facts[d]["rows"].value, facts[d]["rescued_rows"].value) for d in DAYS] == \
        [(2, 3, 0), (1, 3, 2), (1, 1, 0)]
    assert facts["2026-01-02"]["lake/blocked"].value.startswith("rescued_data_rate ERROR")
    assert facts["2026-01-01"]["lake/blocked"].value == ""

    # one result per check per day, on its own partition
    rescued = {d: _check(instance, "rescued_data_rate", d) for d in DAYS}
    assert [rescued[d].passed for d in DAYS] == [True, False, True]
    assert rescued["2026-01-02"].severity.value == "ERROR"
    assert rescued["2026-01-02"].description.startswith("ERROR: 66.7 % rows rescued (type conflicts 66.7 % > 10 %)")
    assert rescued["2026-01-02"].metadata["type_conflict_paths"].value == {"n": 2}
    assert rescued["2026-01-01"].target_materialization_data.run_id == result.run_id
    for name in ("malformed_rate", "unreadable_files", "schema_drift"):
        assert all(_check(instance, name, d).passed for d in DAYS), name

    # silver: the good days only, each with its own rows; gold did not run (its upstream step failed)
    assert _latest(instance, SILVER, "2026-01-02") is None
    assert [_latest(instance, SILVER, d).metadata["rows"].value for d in (DAYS[0], DAYS[2])] == [3, 1]
    assert sorted(read_delta(f"{lake.warehouse}/silver/evs")["id"]) == [1, 2, 3, 7]
    assert all(_latest(instance, GOLD, d) is None for d in DAYS)

    # declarative automation: gold follows silver for the published days, never the blocked one
    requested, cursor = _automation_tick(defs, instance, cursor)
    assert requested == [("gold/per_day", DAYS[0]), ("gold/per_day", DAYS[2])]
    assert _latest(instance, SILVER, DAYS[1]) is None and _latest(instance, GOLD, DAYS[1]) is None
    gold = read_delta(f"{lake.warehouse}/gold/per_day").sort_values("_partition_date")
    assert gold[["_partition_date", "events"]].values.tolist() == [["2026-01-01", 3], ["2026-01-03", 1]]
    assert [_latest(instance, GOLD, d).metadata["rows"].value for d in (DAYS[0], DAYS[2])] == [1, 1]
    assert _automation_tick(defs, instance, cursor)[0] == []

    # a rerun with no new files keeps the day's facts (not zeros)
    result = _run_range(defs, instance, DAYS[0], DAYS[0], selection=[BRONZE])
    again = _latest(instance, BRONZE, DAYS[0]).metadata
    assert result.success and (again["new_files"].value, again["files"].value, again["rows"].value) == (0, 2, 3)


def test_unreadable_file_blocks_its_day(tmp_path, buckets):
    defs, lake = _lake(tmp_path, buckets)
    lake.land(DAYS[0], "a.json", [{"id": 1, "n": 1}])
    lake.land_raw(DAYS[0], "broken.json.gz", b"\x1f\x8bnot gzip at all")
    instance = DagsterInstance.ephemeral()
    result = _run_range(defs, instance, DAYS[0], DAYS[0], selection=[BRONZE])
    assert not result.success   # no silver in the run to refuse the day: the bronze step fails itself
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = failure.step_failure_data.user_failure_data.description
    assert "unreadable_files ERROR: 1 file(s) unreadable" in message and "broken.json.gz" in message
    unreadable = _check(instance, "unreadable_files", DAYS[0])
    assert not unreadable.passed and unreadable.metadata["unreadable"].value == 1
    bronze = _latest(instance, BRONZE, DAYS[0]).metadata
    assert (bronze["files"].value, bronze["rows"].value, bronze["unreadable_files"].value) == (1, 1, 1)
    assert len(read_delta(lake.layout.bronze)) == 1   # bronze keeps the readable file's rows


def test_file_landing_reaches_gold_with_nobody_clicking(tmp_path, buckets):
    """The sensor requests bronze for the new file's day; automation ticks then request silver and
    gold for that day. Runs are executed in-process against the same instance."""
    from lake_assets.orchestration.resources import LakeResource

    defs, lake = _lake(tmp_path, buckets)
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    sensor = defs.get_sensor_def("bronze_ev_files")
    day = "2026-01-02"
    _, cursor = _automation_tick(defs, instance)
    lake.land(day, "a.json", [{"id": 1, "n": 1}, {"id": 2, "n": 2}])

    context = build_sensor_context(instance=instance, resources={"lake_resource": LakeResource(
        config_path=str(tmp_path / "lake.yaml"))})
    requests = sensor(context).run_requests
    assert [r.partition_key for r in requests] == [day]
    assert job.execute_in_process(instance=instance, asset_selection=requests[0].asset_selection,
                                  partition_key=day, tags=requests[0].tags).success
    requested, cursor = _automation_tick(defs, instance, cursor)
    assert requested == [("gold/per_day", day), ("silver/evs", day)]
    assert _automation_tick(defs, instance, cursor)[0] == []
    assert read_delta(f"{lake.warehouse}/gold/per_day")[["_partition_date", "events"]].values.tolist() == [[day, 2]]
    assert _latest(instance, GOLD, day).metadata["rows"].value == 1


def test_schema_drift_is_judged_per_day_and_accept_schema_job_clears_it(tmp_path, buckets):
    defs, lake = _lake(tmp_path, buckets)
    lake.land(DAYS[0], "a.json", [{"id": 1, "n": 1}])
    instance = DagsterInstance.ephemeral()
    _, cursor = _automation_tick(defs, instance)
    assert _run_range(defs, instance, DAYS[0], DAYS[0]).success
    lake.land(DAYS[1], "a.json", [{"id": 2, "n": 2, "extra": {"k": 1}}])
    assert _run_range(defs, instance, DAYS[0], DAYS[1]).success   # drift is a WARN: both days publish
    assert _automation_tick(defs, instance, cursor)[0] == []       # runs that did silver and gold: nothing to follow
    assert _latest(instance, SILVER, DAYS[1]) is not None
    day1, day2 = _check(instance, "schema_drift", DAYS[0]), _check(instance, "schema_drift", DAYS[1])
    assert day1.passed   # the next day's new field never counts against this day
    assert not day2.passed and day2.severity.value == "WARN"
    assert day2.description.startswith("WARN: added: extra struct<k:bigint> (version 1 against accepted 0")

    accept = defs.resolve_job_def("accept_schema").execute_in_process(
        instance=instance, run_config={"ops": {"accept_schema_op": {"config": {"source": "ev"}}}})
    assert accept.success
    assert _run_range(defs, instance, DAYS[1], DAYS[1], selection=[BRONZE]).success
    assert _check(instance, "schema_drift", DAYS[1]).passed
    bad = defs.resolve_job_def("accept_schema").execute_in_process(
        instance=instance, raise_on_error=False, run_config={"ops": {"accept_schema_op": {"config": {"source": "nope"}}}})
    assert not bad.success
