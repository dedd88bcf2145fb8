"""silver/<name> and gold/<name> assets: daily partitions like their bronze source, one core run each."""

from dagster import (AssetExecutionContext, AssetKey, BackfillPolicy, Failure, MaterializeResult, MetadataValue,
                     asset)

from lake_assets.config import GoldConfig, LakeConfig, SilverConfig
from lake_assets.core import gold, silver
from lake_assets.orchestration import databricks
from lake_assets.orchestration.bronze import bronze_key, daily_partitions
from lake_assets.orchestration.metadata import column_schema, uri_metadata
from lake_assets.orchestration.resources import LakeResource


def silver_key(name: str) -> AssetKey:
    return AssetKey(["silver", name])


def gold_key(name: str) -> AssetKey:
    return AssetKey(["gold", name])


def _expectation_metadata(result: silver.SilverResult) -> dict:
    out = {"expectations": MetadataValue.json(result.expectations)} if result.expectations else {}
    for name, e in result.expectations.items():
        out[f"expectation/{name}/passed"] = e["passed"]
        out[f"expectation/{name}/failed"] = e["failed"]
    return out


def silver_asset(lake: LakeConfig, cfg: SilverConfig):
    @asset(
        key=silver_key(cfg.name),
        deps=[bronze_key(cfg.source)],
        partitions_def=daily_partitions(lake.source(cfg.source)),
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31),
        group_name="silver",
        kinds={"delta", "spark"},
        description=f"Silver table ({cfg.mode}) from bronze/{cfg.source}"
                    + (f", keys {cfg.keys}, latest by {cfg.sequence_by}" if cfg.keys else "")
                    + (f"; expectations: {', '.join(cfg.expectations)}" if cfg.expectations else "") + ".",
        metadata={**uri_metadata(silver.table_uri(lake, cfg.name)), "mode": cfg.mode},
    )
    def _silver(context: AssetExecutionContext, lake_resource: LakeResource) -> MaterializeResult:
        lake_now = lake_resource.lake()
        cfg_now = lake_now.silver[cfg.name]
        try:
            days = list(context.partition_keys)
            result = (databricks.run_step(context, lake_now, "silver", cfg.name, days)
                      if lake_now.engine.kind == "databricks"
                      else silver.run(lake_resource.spark(), lake_now, cfg_now, days, log=context.log.info))
        except silver.ExpectationFailed as exc:
            raise Failure(description=str(exc), metadata={"failed": MetadataValue.json(exc.failures)}) from None
        metadata = {
            "rows_read": result.rows_read, "rows_written": result.rows_written,
            "rows_dropped": result.rows_dropped, "rows_quarantined": result.rows_quarantined,
            "table_rows": result.table_rows,
            "delta_version": result.table_version if result.table_version is not None else -1,
            **_expectation_metadata(result),
            **column_schema(result.schema),
        }
        if result.current_rows is not None:
            metadata["current_rows"] = result.current_rows
        if result.rows_quarantined:
            metadata["quarantine_table"] = MetadataValue.path(silver.quarantine_uri(lake_now, cfg.name))
        return MaterializeResult(metadata=metadata)

    return _silver


def gold_asset(lake: LakeConfig, cfg: GoldConfig):
    first_source = lake.source(lake.silver[cfg.source[0]].source)
    partitioned = cfg.partitioned

    @asset(
        key=gold_key(cfg.name),
        deps=[silver_key(name) for name in cfg.source],
        partitions_def=daily_partitions(first_source) if partitioned else None,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31) if partitioned else None,
        group_name="gold",
        kinds={"delta", "spark"},
        description=f"Gold table from SQL over {', '.join('silver/' + s for s in cfg.source)}; "
                    + ("each daily partition recomputed and replaced atomically." if partitioned
                       else "rebuilt whole on every run."),
        metadata={**uri_metadata(gold.table_uri(lake, cfg.name)), "sql": MetadataValue.md(f"```sql\n{cfg.sql}\n```")},
    )
    def _gold(context: AssetExecutionContext, lake_resource: LakeResource) -> MaterializeResult:
        lake_now = lake_resource.lake()
        days = list(context.partition_keys) if partitioned else None
        result = (databricks.run_step(context, lake_now, "gold", cfg.name, days) if lake_now.engine.kind == "databricks"
                  else gold.run(lake_resource.spark(), lake_now, lake_now.gold[cfg.name], days, log=context.log.info))
        return MaterializeResult(metadata={
            "rows_written": sum(result.rows_written.values()), "table_rows": result.table_rows,
            "delta_version": result.table_version if result.table_version is not None else -1,
            **column_schema(result.schema),
        })

    return _gold
