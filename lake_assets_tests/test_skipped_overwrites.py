"""Files overwritten after they were loaded, with `on_overwrite: ignore`, stay as loaded and are
reported as such: counted in the ingest result, the Dagster materialization metadata
(`files_overwritten_ignored`) and the CLI's ingest line (`skipped_overwritten`); with the default
`reprocess` nothing is skipped and the new version replaces the old rows."""

import json

from dagster import DagsterInstance
from deltalake import DeltaTable

from lake_assets import cli, storage
from lake_assets.config import load_config
from lake_assets.core.bronze import ingest
from lake_assets.core.delta_meta import storage_options
from lake_assets.definitions import build_definitions
from lake_assets.engine import spark_session
from lake_assets_tests.scenario_helpers import Lake

DAY = "2026-01-01"


def _ndjson(prefix: str, n: int) -> bytes:
    return b"".join(json.dumps({"id": f"{prefix}-{i}", "n": i}).encode() + b"\n" for i in range(n))


def _lake(tmp_path, buckets, on_overwrite: str) -> tuple[str, str, str]:
    """A source `ev` with a.json (3 records) and b.json (2) landed on DAY: (config, a's URI, bronze URI)."""
    landing, warehouse = buckets
    a = f"{landing}/ev/2026/01/01/a.json"
    storage.write_bytes(a, _ndjson("a", 3))
    storage.write_bytes(f"{landing}/ev/2026/01/01/b.json", _ndjson("b", 2))
    config = str(Lake(tmp_path, warehouse, landing=landing, source="ev", start_date=DAY,
                      on_overwrite=on_overwrite).config)
    return config, a, f"{warehouse}/bronze/ev"


def _bronze_ids(uri: str) -> list[str]:
    return sorted(DeltaTable(uri, storage_options=storage_options(uri)).to_pandas()["id"])


def _materialize(defs, instance) -> dict:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key=DAY, instance=instance, raise_on_error=False)
    assert result.success
    (bronze,) = [e.materialization for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                 and e.materialization.asset_key.to_user_string() == "bronze/ev" and "delta_version" in
                 e.materialization.metadata]
    return bronze.metadata


def _cli_ingest(config: str, capsys) -> dict:
    assert cli.main(["--config", config, "ingest", "ev", "--date", DAY]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_ignored_overwrites_are_counted_in_the_result_the_metadata_and_the_cli(tmp_path, buckets, capsys):
    config, a, bronze = _lake(tmp_path, buckets, "ignore")
    defs, instance = build_definitions(config), DagsterInstance.ephemeral()
    first = _materialize(defs, instance)
    assert first["files_overwritten_ignored"].value == 0 and first["write_modes"].value == ["append"]
    loaded = _bronze_ids(bronze)
    assert loaded == ["a-0", "a-1", "a-2", "b-0", "b-1"]

    storage.write_bytes(a, _ndjson("a2", 1))   # a new version of a loaded file
    again = _materialize(defs, instance)
    assert again["files_overwritten_ignored"].value == 1 and "write_modes" not in again   # nothing written
    line = _cli_ingest(config, capsys)
    assert (line["skipped_overwritten"], line["files"], line["records"]) == (1, 0, 0)
    lake, logged = load_config(config), []
    result = ingest(spark_session(), lake, lake.sources["ev"], [DAY], log=logged.append)
    assert (result.skipped_overwritten, result.files) == (1, 0)
    assert any("1 overwritten since loaded and left as loaded (on_overwrite: ignore)" in m for m in logged), logged
    assert _bronze_ids(bronze) == loaded   # the old rows stay, the new version is not read


def test_with_reprocess_nothing_is_skipped_and_the_new_version_replaces_the_rows(tmp_path, buckets, capsys):
    config, a, bronze = _lake(tmp_path, buckets, "reprocess")
    assert _cli_ingest(config, capsys)["skipped_overwritten"] == 0
    storage.write_bytes(a, _ndjson("a2", 1))
    line = _cli_ingest(config, capsys)
    assert (line["skipped_overwritten"], line["files"], line["records"]) == (0, 1, 1)
    assert _bronze_ids(bronze) == ["a2-0", "b-0", "b-1"]
