"""Asset metadata the UI can show: the table URI as text, dagster/table_name, the column schema at
definition time from the schema log (nested fields readable, audit columns described), owners and
tags from the config, described job config; definitions load without a schema log or a warehouse."""

import sys
import time

import pytest
from dagster import AssetKey, MetadataValue

from lake_assets import definitions
from lake_assets.config import ConfigError, load_config
from lake_assets.core.bronze import ingest
from lake_assets.definitions import build_definitions
from lake_assets.engine import spark_session
from lake_assets_tests.scenario_helpers import Lake

SILVER = """\
  evs: {from: ev, select: [id], mode: append, owners: [ann@example.com], automation: false}
"""


def _lake(tmp_path, warehouse: str | None = None) -> Lake:
    return Lake(tmp_path, warehouse, source="ev", owners=["team:data"], tags={"domain": "devices"}, silver=SILVER)


def _specs(defs):
    return {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def test_metadata_owners_tags_and_column_schema_from_the_schema_log(tmp_path):
    ev = _lake(tmp_path)
    config = str(ev.config)
    before = _specs(build_definitions(config))[AssetKey(["bronze", "ev"])]
    assert "dagster/column_schema" not in before.metadata   # nothing ingested yet: no schema log
    ev.land(1, "a.json", [{"id": 1, "device": {"fw": {"minor": 2}}, "signals": [{"unit": "C"}]}])
    lake = load_config(config)
    ingest(spark_session(), lake, lake.sources["ev"], ["2026-01-01"], log=lambda m: None)

    specs = _specs(build_definitions(config))
    bronze, silver = specs[AssetKey(["bronze", "ev"])], specs[AssetKey(["silver", "evs"])]
    assert bronze.metadata["dagster/uri"] == MetadataValue.text(lake.warehouse + "/bronze/ev")
    assert bronze.metadata["dagster/table_name"] == "bronze.ev"
    columns = {c.name: c for c in bronze.metadata["dagster/column_schema"].columns}
    assert list(columns)[:3] == ["id", "device.fw.minor", "signals[].unit"]
    assert columns["device.fw.minor"].type == "bigint"
    assert columns["_landing_date"].description.startswith("landing day (partition)")
    assert columns["_rescued_data"].description
    assert (bronze.owners, bronze.tags.get("domain")) == (["team:data"], "devices")
    assert silver.owners == ["ann@example.com"] and silver.automation_condition is None
    assert specs[AssetKey(["silver", "evs"])].metadata["dagster/table_name"] == "silver.evs"

    config_fields = build_definitions(config).resolve_job_def("promote_rescued_field").run_config_schema \
        .config_type.fields["ops"].config_type.fields["promote_rescued_field_op"].config_type.fields["config"] \
        .config_type.fields
    assert all(field.description for field in config_fields.values())


def test_definitions_load_fast_when_the_warehouse_does_not_answer(tmp_path):
    config = str(_lake(tmp_path, "s3://no-such-bucket-anywhere").config)
    started = time.monotonic()
    specs = _specs(build_definitions(config))
    assert time.monotonic() - started < 10
    assert "dagster/column_schema" not in specs[AssetKey(["bronze", "ev"])].metadata


def test_a_config_error_ends_a_dagster_command_with_the_errors_exit_code(monkeypatch, capsys):
    class Broken(ConfigError):
        exit_code = 3

    def broken(config_path=None):
        raise Broken("lake.yaml: sources.ev.path: field required")

    monkeypatch.setattr(definitions, "build_definitions", broken)
    monkeypatch.setattr(sys, "argv", ["dagster", "definitions", "validate"])
    with pytest.raises(SystemExit) as exited:
        definitions._default_definitions()
    assert exited.value.code == 3
    assert capsys.readouterr().err == ("lake_assets.definitions: cannot load the lake config:\n"
                                       "lake.yaml: sources.ev.path: field required\n")
    monkeypatch.setattr(sys, "argv", ["dagster", "code-server", "start"])   # a server keeps the error for the UI
    with pytest.raises(Broken):
        definitions._default_definitions()
