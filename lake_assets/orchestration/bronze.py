"""bronze/<source> assets: daily partitions by landing date. A step calls the core twice — ingest,
then audit — and reports per day: one materialization and one result per check for each day."""

import time

from dagster import (AssetExecutionContext, AssetKey, BackfillPolicy, DailyPartitionsDefinition, MaterializeResult,
                     MetadataValue, asset)

from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core import quality
from lake_assets.core.bronze import IngestResult, ingest
from lake_assets.core.layout import Layout
from lake_assets.orchestration import databricks
from lake_assets.orchestration.checks import BLOCKED, blocked_failure, blocked_reason, check_specs, evaluations
from lake_assets.orchestration.failures import as_failure
from lake_assets.orchestration.metadata import column_schema, table_metadata
from lake_assets.orchestration.resources import LakeResource

BACKFILL_TAG = "dagster/backfill"
MAX_BATCHES_TAG = "lake/max_batches"


def daily_partitions(source: SourceConfig) -> DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so files that land today are ingested today.
    return DailyPartitionsDefinition(start_date=source.start_date.isoformat(), end_offset=1)


def bronze_key(source_name: str) -> AssetKey:
    return AssetKey(["bronze", source_name])


def _day_metadata(audit: quality.DayAudit) -> dict:
    f = audit.facts
    return {"files": f.files, "rows": f.rows, "bytes": f.bytes, "malformed": f.malformed, "rescued_rows": f.rescued,
            "new_files": f.new_files, "new_rows": f.new_rows, "unreadable_files": len(f.failed),
            "schema_version": audit.schema_version if audit.schema_version is not None else -1,
            "checks": MetadataValue.md("\n".join(f"- **{v.check}** {v.level}: {v.description}" for v in audit.verdicts)),
            BLOCKED: blocked_reason(audit)}


def bronze_asset(lake: LakeConfig, source: SourceConfig, downstream: set[AssetKey] = frozenset()):
    """`downstream`: the silver assets of this source; when a run holds none of them, nothing in it
    would refuse a blocked day, so the bronze step itself fails for it."""
    layout = Layout(lake.warehouse, source.name)
    key = bronze_key(source.name)

    @asset(
        key=key,
        partitions_def=daily_partitions(source),
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31),
        pool=f"lake_bronze_{source.name}",
        group_name="bronze",
        kinds={"delta", "spark", "s3" if lake.landing.startswith("s3") else "json"},
        description=f"Append-only Delta table of every JSON record landed under {lake.landing}/{source.path} "
                    f"(schema_evolution_mode {source.schema_evolution_mode}).",
        metadata={**table_metadata(layout.bronze, f"bronze.{source.name}", layout.schemas, source.rescued_data_column),
                  "landing": f"{lake.landing}/{source.path}"},
        check_specs=check_specs(source, key),
        owners=source.owners or None,
        tags=source.tags or None,
    )
    def _bronze(context: AssetExecutionContext, lake_resource: LakeResource):
        # A backfill re-reads every file of its days and replaces their rows; a normal run only takes new files.
        reprocess = BACKFILL_TAG in context.run.tags
        lake_now = lake_resource.lake()
        src = lake_now.source(source.name)
        result, audits = _ingest_and_audit(context, lake_resource, lake_now, src, reprocess)
        for day, audit in audits.items():
            context.add_asset_metadata(_day_metadata(audit), partition_key=day)
        yield MaterializeResult(metadata=_run_metadata(result, reprocess, src.rescued_data_column))
        yield from evaluations(context, key, audits)
        blocked = {day: blocked_reason(a) for day, a in audits.items() if a.blocked_by}
        if blocked and not downstream & context.job_def.asset_layer.selected_asset_keys:
            raise blocked_failure(blocked)

    return _bronze


def _ingest_and_audit(context: AssetExecutionContext, lake_resource: LakeResource, lake_now: LakeConfig,
                      src: SourceConfig, reprocess: bool) -> tuple[IngestResult, dict[str, quality.DayAudit]]:
    """The core's ingest of the run's days, then the audit of those days (on the cluster, for databricks)."""
    days = list(context.partition_keys)
    # A sensor's run is bounded to one batch (max_files_per_run / max_bytes_per_run).
    max_batches = int(context.run.tags[MAX_BATCHES_TAG]) if MAX_BATCHES_TAG in context.run.tags else None
    with as_failure():
        if lake_now.engine.kind == "databricks":   # both on the cluster, one job
            return databricks.run_step(context, lake_now, "bronze", src.name, days, {
                "reprocess": reprocess, "run_id": context.run.run_id, "max_batches": max_batches})
        started = time.monotonic()
        spark = lake_resource.spark()
        context.log.info(f"engine ready in {time.monotonic() - started:.1f} s ({lake_now.engine.kind})")
        result = ingest(spark, lake_now, src, days, reprocess=reprocess, run_id=context.run.run_id,
                        log=context.log.info,
                        progress=lambda done, total: context.log.info(f"{done}/{total} file(s) done"),
                        max_batches=max_batches)
        return result, quality.audit(spark, lake_now, src, days, result.batch_ids)


def _run_metadata(result: IngestResult, reprocess: bool, rescued_column: str) -> dict:
    """The materialization's metadata for the whole run (the per-day figures are _day_metadata's)."""
    metadata = {
        "delta_version": result.table_version if result.table_version is not None else -1,
        "mode": "reprocess" if reprocess else "incremental",
        **column_schema(result.schema, rescued_column),
    }
    if result.schema_changes:
        metadata["schema_change"] = MetadataValue.md("\n".join(
            f"**schema version {v}**: " + "; ".join(f"{k}: {', '.join(items)}" for k, items in d.as_dict().items() if items)
            for v, d in result.schema_changes))
    if result.rejected_fields:
        metadata["rescued_field_names"] = MetadataValue.json(result.rejected_fields)
    if result.ignored_fields:
        metadata["ignored_fields"] = MetadataValue.json(result.ignored_fields)
    if result.skipped_busy:
        metadata["files_claimed_by_other_runs"] = result.skipped_busy
    metadata["objects_skipped_not_data"] = result.skipped_unselected  # include / exclude / default excludes
    metadata["files_overwritten_ignored"] = result.skipped_overwritten  # on_overwrite: ignore
    if result.write_modes:   # append: new files; replace: files whose rows were rewritten
        metadata["write_modes"] = MetadataValue.json(sorted(result.write_modes))
    return metadata
