"""The job side of `engine: databricks`: `python -m lake_assets.remote` (the wheel's `lake-remote`
entry point) opens Dagster Pipes, takes the job's active Spark session, runs one step's core
function and reports its result. No Dagster here: only `dagster-pipes`, which the runtime wheel
brings.

Dagster passes the step in the Pipes extras: {"step": "bronze" | "silver" | "gold", "name",
"days" (None: a whole gold rebuild), "config" (the lake YAML text), "options"}. The result goes back
as one custom message (`encode`; for bronze with the per-day audits of its checks, `encode_audit`),
which the Dagster side turns back into the core's dataclasses (`decode`, `decode_audit`) and reports
as its own step would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from pyspark.sql import types as T

from lake_assets.config import EngineConfig, LakeConfig, parse_config
from lake_assets.core import bronze, gold, quality, silver
from lake_assets.core.layout import table_uri
from lake_assets.core.schema import SchemaDiff
from lake_assets.errors import LakeError

RESULTS = {"bronze": bronze.IngestResult, "silver": silver.SilverResult, "gold": gold.GoldResult}


class RemoteError(LakeError, RuntimeError):
    """The job was handed a step it does not know."""


def encode(result) -> dict:
    """A core result dataclass as JSON-able values."""
    out = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, T.StructType):
            value = value.json()
        elif isinstance(value, set):
            value = sorted(value)
        elif f.name == "schema_changes":
            value = [[version, d.as_dict()] for version, d in value]
        out[f.name] = value
    return out


def decode(step: str, values: dict):
    """The inverse of `encode` for `step`'s result type."""
    values = dict(values)
    if values.get("schema"):
        values["schema"] = T.StructType.fromJson(json.loads(values["schema"]))
    if "write_modes" in values:
        values["write_modes"] = set(values["write_modes"])
    if "schema_changes" in values:
        values["schema_changes"] = [(version, SchemaDiff(**d)) for version, d in values["schema_changes"]]
    return RESULTS[step](**values)


def table_name(lake: LakeConfig, step: str, name: str) -> str | None:
    """The Unity Catalog name of a table (catalog.schema.<layer>_<name>), when the config gives one."""
    db = lake.engine.databricks
    return f"{db.catalog}.{db.schema_name}.{step}_{name}" if db and db.catalog else None


def encode_audit(audit: quality.DayAudit) -> dict:
    out = dataclasses.asdict(audit)
    at = audit.facts.committed_at
    out["facts"]["committed_at"] = at.isoformat() if at else None
    return out


def decode_audit(values: dict) -> quality.DayAudit:
    facts = dict(values["facts"])
    if facts["committed_at"]:
        facts["committed_at"] = dt.datetime.fromisoformat(facts["committed_at"])
    return quality.DayAudit(quality.DayFacts(**facts), [quality.Verdict(**v) for v in values["verdicts"]],
                            values["schema_version"])


def run_step(spark, lake: LakeConfig, step: str, name: str, days: list[str] | None, options: dict, log=print):
    """One step's core functions: (the result, the audits): bronze ingest then the audit of its days
    (what the local bronze step runs), or a silver or a gold run (no audits)."""
    if step == "bronze":
        source = lake.source(name)
        result = bronze.ingest(spark, lake, source, days, reprocess=options.get("reprocess", False),
                               run_id=options.get("run_id"), max_batches=options.get("max_batches"), log=log)
        return result, quality.audit(spark, lake, source, days, result.batch_ids)
    if step == "silver":
        return silver.run(spark, lake, lake.silver[name], days, log=log), {}
    if step == "gold":
        return gold.run(spark, lake, lake.gold[name], days, log=log), {}
    raise RemoteError(f"unknown step {step!r}")


def register_table(spark, lake: LakeConfig, step: str, name: str) -> str | None:
    """Register the table in Unity Catalog as an external table over its path (managed tables
    cannot be addressed by path, which every step does). Writes no commit."""
    full = table_name(lake, step, name)
    if full:
        spark.sql(f"CREATE TABLE IF NOT EXISTS {full} USING DELTA LOCATION '{table_uri(lake.warehouse, step, name)}'")
    return full


def main() -> None:
    from dagster_pipes import (PipesCliArgsParamsLoader, PipesEnvVarParamsLoader,
                               PipesUnityCatalogVolumesContextLoader, PipesUnityCatalogVolumesMessageWriter,
                               open_dagster_pipes)

    from lake_assets.engine import spark_session

    # An existing cluster gets the Pipes parameters as task arguments, a new or serverless one in its environment.
    cli = PipesCliArgsParamsLoader()
    params = cli if cli.is_dagster_pipes_process() else PipesEnvVarParamsLoader()
    with open_dagster_pipes(params_loader=params, context_loader=PipesUnityCatalogVolumesContextLoader(),
                            message_writer=PipesUnityCatalogVolumesMessageWriter()) as pipes:
        x = pipes.extras
        lake = parse_config(x["config"], x.get("config_file", "lake.yaml"))
        spark = spark_session(EngineConfig(kind="active"))
        result, audits = run_step(spark, lake, x["step"], x["name"], x["days"], x.get("options", {}),
                                  log=pipes.log.info)
        full = register_table(spark, lake, x["step"], x["name"])
        pipes.report_custom_message({"result": encode(result), "table_name": full,
                                     "audits": {day: encode_audit(a) for day, a in audits.items()}})


if __name__ == "__main__":
    main()
