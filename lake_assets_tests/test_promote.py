"""Promoting a rescued field: column added, history backfilled, rescued JSON cleaned, schema
log and drift check updated, rerun a no-op."""

import datetime as dt
import json

import pytest

from lake_assets.core import quality, silver
from lake_assets.core.bronze import ingest
from lake_assets.core.layout import Layout, silver_uri
from lake_assets.core.promote import PromoteError, promote
from lake_assets.core.schema_log import SchemaLog
from lake_assets.engine import spark_session
from lake_assets_tests.scenario_helpers import Lake, plain, read_delta


def _lake(tmp_path, **source_options) -> Lake:
    return Lake(tmp_path, source="ev", **source_options)


def _land(lake: Lake, day: str, records: list[dict]) -> str:
    return lake.land(day, "part.json", records)


def _rows(spark, lake):
    table = spark.read.format("delta").load(Layout(lake.warehouse, "ev").bronze)
    return {r["id"]: r for r in table.collect()}


def test_promote_moves_rescued_values_into_a_new_column(spark, tmp_path):
    ev = _lake(tmp_path, schema_evolution_mode="rescue")
    lake, source = ev.lake_config, ev.source_config
    _land(ev, "2026-01-01", [{"id": 1, "a": {"x": 1}}])
    f2 = _land(ev, "2026-01-02", [{"id": 2, "a": {"x": 2, "y": 5}, "z": "q"},
                                  {"id": 3, "a": {"x": 3, "y": "not a number"}}])
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark, lake, source, [day], log=lambda m: None)
    before = _rows(spark, lake)
    assert json.loads(before[2]["_rescued_data"]) == {"a.y": 5, "z": "q", "_file_path": f2}

    done = promote(spark, lake, source, "a.y", log=lambda m: None)
    assert (done.type, done.rows_moved, done.rows_left) == ("bigint", 1, 1)
    rows = _rows(spark, lake)
    assert rows[2]["a"]["y"] == 5 and json.loads(rows[2]["_rescued_data"]) == {"z": "q", "_file_path": f2}
    assert rows[3]["a"]["y"] is None and json.loads(rows[3]["_rescued_data"])["a.y"] == "not a number"
    assert rows[1]["a"]["y"] is None and rows[1]["_rescued_data"] is None
    assert len(rows) == 3 and rows[2]["_batch_id"] == before[2]["_batch_id"]

    log = SchemaLog(Layout(lake.warehouse, "ev").schemas)
    assert log.current().reason == "promoted a.y bigint" and log.accepted().version == log.current().version
    assert quality.schema_drift(Layout(lake.warehouse, "ev")).diff.empty

    # Rerun: nothing changes.
    again = promote(spark, lake, source, "a.y", log=lambda m: None)
    assert (again.rows_moved, again.schema_version) == (0, done.schema_version)

    # A top-level field, type inferred from the rescued values; the rescued column empties.
    promote(spark, lake, source, "z", log=lambda m: None)
    rows = _rows(spark, lake)
    assert rows[2]["z"] == "q" and rows[2]["_rescued_data"] is None

    # New files now fill the promoted column (mode rescue keeps the accepted schema, which has it).
    _land(ev, "2026-01-03", [{"id": 4, "a": {"x": 4, "y": 9}, "z": "r"}])
    ingest(spark, lake, source, ["2026-01-03"], log=lambda m: None)
    rows = _rows(spark, lake)
    assert (rows[4]["a"]["y"], rows[4]["z"], rows[4]["_rescued_data"]) == (9, "r", None)


def test_promote_refuses_bad_requests(tmp_path):
    ev = _lake(tmp_path)
    lake, source, spark = ev.lake_config, ev.source_config, spark_session()
    with pytest.raises(PromoteError, match="no bronze table yet"):
        promote(spark, lake, source, "a", log=lambda m: None)
    for text in ("a`b", "a.`b", "a[x]"):  # not a field path (an unmatched backtick, a bad position)
        with pytest.raises(PromoteError, match="give a field path as the rescued column's keys write it"):
            promote(spark, lake, source, text, log=lambda m: None)
    _land(ev, "2026-01-01", [{"id": 1, "n": 1}, {"id": 2, "n": "two"}])
    ingest(spark, lake, source, ["2026-01-01"], log=lambda m: None)
    with pytest.raises(PromoteError, match="already a column of type bigint"):
        promote(spark, lake, source, "n", "STRING", log=lambda m: None)
    with pytest.raises(PromoteError, match="fields inside arrays"):
        promote(spark, lake, source, "s[0].x", log=lambda m: None)
    with pytest.raises(PromoteError, match="fields inside arrays"):
        promote(spark, lake, source, "s[].x", log=lambda m: None)
    with pytest.raises(PromoteError, match="no rescued values for 'nothing'"):
        promote(spark, lake, source, "nothing", log=lambda m: None)
    assert json.loads(_rows(spark, lake)[2]["_rescued_data"])["n"] == "two"


def test_promote_job_runs_with_the_same_config(tmp_path):
    from dagster import DagsterInstance

    from lake_assets.definitions import build_definitions

    ev = _lake(tmp_path, schema_evolution_mode="rescue")
    config, lake = str(ev.config), ev.lake_config
    _land(ev, "2026-01-01", [{"id": 1}])
    # a double the engine's from_json would round (…977): promoted values are typed in Python
    _land(ev, "2026-01-02", [{"id": 2, "extra": 0.24148370569169975, "at": "2026-01-01T10:00:00+02:00"}])
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark_session(), lake, lake.sources["ev"], [day], log=lambda m: None)
    job = build_definitions(config).resolve_job_def("promote_rescued_field")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config={
        "ops": {"promote_rescued_field_op": {"config": {"source": "ev", "path": "extra", "type": "DOUBLE"}}}})
    assert result.success
    rows = _rows(spark_session(), lake)
    assert json.loads(rows[2]["_rescued_data"])["at"]
    # exact in the table (delta-rs reads it; Sail's Delta scan answers a file whose column holds
    # one value from the statistics, parsed with the same rounding as its from_json)
    from deltalake import DeltaTable

    stored = DeltaTable(Layout(lake.warehouse, "ev").bronze).to_pandas()
    assert stored.loc[stored["id"] == 2, "extra"].tolist() == [0.24148370569169975]
    promote(spark_session(), lake, lake.sources["ev"], "at", "TIMESTAMP", log=lambda m: None)
    rows = _rows(spark_session(), lake)
    assert (rows[2]["at"], rows[2]["_rescued_data"]) == (dt.datetime(2026, 1, 1, 8), None)
    bad = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False, run_config={
        "ops": {"promote_rescued_field_op": {"config": {"source": "ev", "path": "id", "type": "STRING"}}}})
    assert not bad.success


def test_promote_refuses_an_existing_column_and_accepts_no_unrelated_drift(tmp_path):
    ev = _lake(tmp_path, schema_evolution_mode="rescue")
    spark = spark_session()
    _land(ev, "2026-01-01", [{"id": 1, "n": 1}])
    _land(ev, "2026-01-02", [{"id": 2, "n": "two", "y": 5}])
    _land(ev, "2026-01-03", [{"id": 3, "n": 3, "w": True}])
    lake = ev.lake_config
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark, lake, lake.sources["ev"], [day], log=lambda m: None)
    ev.write_config()   # the source switches to addNewColumns: day 3 adds w, unaccepted
    lake = ev.lake_config
    ingest(spark, lake, lake.sources["ev"], ["2026-01-03"], log=lambda m: None)

    with pytest.raises(PromoteError, match="n is already a column of type bigint; nothing to promote"):
        promote(spark, lake, lake.sources["ev"], "n", log=lambda m: None)
    done = promote(spark, lake, lake.sources["ev"], "y", log=lambda m: None)
    assert (done.rows_moved, _rows(spark, lake)[2]["y"]) == (1, 5)
    drift = quality.schema_drift(Layout(lake.warehouse, "ev")).diff
    assert (drift.added, drift.removed, drift.retyped) == (["w boolean"], [], [])


# Keys as AWS writes them, holding dots: a CodePipeline job event as a Lambda receives it (top
# level), and an EKS audit event's annotations (nested), both first seen after the schema froze.
AUDIT = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": "ResponseComplete",
         "verb": "get", "user": {"username": "system:node:ip-10-0-1-2.ec2.internal"}}
REASON = 'RBAC: allowed by ClusterRoleBinding "system:nodes" of ClusterRole "system:node" to Group "system:nodes"'
JOB = {"id": "11111111-abcd-1111-abcd-111111abcdef", "accountId": "111111111111",
       "data": {"actionConfiguration": {"configuration": {"FunctionName": "MyLambdaFunction",
                                                          "UserParameters": "some-input"}}}}
DOTTED_SILVER = """\
  jobs:
    from: ev
    select: [auditID, "`CodePipeline.job`", "`CodePipeline.job`.id AS job_id",
             "annotations.`authorization.k8s.io/reason` AS reason"]
    mode: append
"""


def test_promote_fields_whose_names_hold_dots_into_bronze_and_silver(spark, tmp_path):
    ev = _lake(tmp_path, schema_evolution_mode="rescue", silver=DOTTED_SILVER)
    lake, source = ev.lake_config, ev.source_config
    _land(ev, "2026-01-01", [{**AUDIT, "auditID": "a-1", "annotations": {"authorization.k8s.io/decision": "allow"}}])
    f2 = _land(ev, "2026-01-02", [
        {**AUDIT, "auditID": "a-2", "annotations": {"authorization.k8s.io/decision": "allow",
                                                   "authorization.k8s.io/reason": REASON}},
        {"auditID": "a-3", "CodePipeline.job": JOB}])
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark, lake, source, [day], log=lambda m: None)
    before = {r["auditID"]: r for r in ev.rows(spark)}
    assert json.loads(before["a-2"]["_rescued_data"]) == {"annotations.`authorization.k8s.io/reason`": REASON,
                                                          "_file_path": f2}
    assert json.loads(before["a-3"]["_rescued_data"]) == {"`CodePipeline.job`": JOB, "_file_path": f2}

    nested = promote(spark, lake, source, "annotations.`authorization.k8s.io/reason`", log=lambda m: None)
    top = promote(spark, lake, source, "`CodePipeline.job`", log=lambda m: None)
    assert (nested.path, nested.type, nested.rows_moved, nested.rows_left) == (
        "annotations.`authorization.k8s.io/reason`", "string", 1, 0)
    assert (top.path, top.rows_moved, top.rows_left) == ("`CodePipeline.job`", 1, 0)
    assert top.type == ("struct<id:string,accountId:string,data:struct<actionConfiguration:struct<configuration:"
                        "struct<FunctionName:string,UserParameters:string>>>>")   # fields in the order seen

    # One name each: a top-level column `CodePipeline.job` (no struct `CodePipeline`), a field
    # `authorization.k8s.io/reason` inside annotations; as delta-rs reads the table.
    bronze = {r["auditID"]: r for r in ev.delta_rows()}
    assert "CodePipeline.job" in ev.frame(ev.bronze_path).columns and "CodePipeline" not in bronze["a-1"]
    assert bronze["a-3"]["CodePipeline.job"] == JOB and bronze["a-2"]["CodePipeline.job"] is None
    assert bronze["a-2"]["annotations"] == {"authorization.k8s.io/decision": "allow",
                                            "authorization.k8s.io/reason": REASON}
    assert bronze["a-1"]["annotations"]["authorization.k8s.io/reason"] is None
    assert [bronze[i]["_rescued_data"] for i in ("a-1", "a-2", "a-3")] == [None, None, None]
    assert [v.reason for v in SchemaLog(ev.layout.schemas).versions()[-2:]] == [
        "promoted annotations.`authorization.k8s.io/reason` string", f"promoted `CodePipeline.job` {top.type}"]
    assert quality.schema_drift(ev.layout).diff.empty
    again = promote(spark, lake, source, "`CodePipeline.job`", log=lambda m: None)   # a rerun moves nothing
    assert (again.rows_moved, again.schema_version) == (0, top.schema_version)

    # New files fill the promoted columns; silver reads them by their quoted names.
    _land(ev, "2026-01-03", [{"auditID": "a-4", "annotations": {"authorization.k8s.io/reason": "r4"},
                              "CodePipeline.job": {**JOB, "id": "j-4"}}])
    ingest(spark, lake, source, ["2026-01-03"], log=lambda m: None)
    silver.run(spark, lake, lake.silver["jobs"], ["2026-01-01", "2026-01-02", "2026-01-03"], log=lambda m: None)
    table = read_delta(silver_uri(ev.warehouse, "jobs"))
    assert [c for c in table.columns if not c.startswith("_")] == ["auditID", "CodePipeline.job", "job_id", "reason"]
    got = {r["auditID"]: (plain(r["CodePipeline.job"]), plain(r["job_id"]), plain(r["reason"]))
           for r in table.to_dict("records")}
    assert got == {"a-1": (None, None, None), "a-2": (None, None, REASON), "a-3": (JOB, JOB["id"], None),
                   "a-4": ({**JOB, "id": "j-4"}, "j-4", "r4")}


def test_promote_finds_the_key_as_the_rescued_column_writes_it(tmp_path):
    """Non-ASCII names stand in the rescued JSON as they are (not \\u-escaped); a data field named
    like the file key (`_file_path`) stands there backtick-quoted, never the file's own URI."""
    ev, spark = _lake(tmp_path, schema_evolution_mode="rescue"), spark_session()
    lake, source = ev.lake_config, ev.source_config
    _land(ev, "2026-01-01", [{"id": 1}])
    f2 = _land(ev, "2026-01-02", [{"id": 2, "_file_path": "mine", "température": 21}])
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark, lake, source, [day], log=lambda m: None)
    assert json.loads(_rows(spark, ev)[2]["_rescued_data"]) == {"`_file_path`": "mine", "température": 21,
                                                                "_file_path": f2}
    assert promote(spark, lake, source, "température", log=lambda m: None).rows_moved == 1
    assert json.loads(_rows(spark, ev)[2]["_rescued_data"]) == {"`_file_path`": "mine", "_file_path": f2}
    assert promote(spark, lake, source, "_file_path", log=lambda m: None).rows_moved == 1
    rows = ev.delta_rows(columns=["id", "_file_path", "température", "_rescued_data"])
    assert rows == [{"id": 1, "_file_path": None, "température": None, "_rescued_data": None},
                    {"id": 2, "_file_path": "mine", "température": 21, "_rescued_data": None}]
