"""bronze/<source> assets: daily partitions by landing date, one core ingest per run."""


from dagster import (AssetExecutionContext, AssetKey, BackfillPolicy, DailyPartitionsDefinition, Failure,
                     MaterializeResult, MetadataValue, asset)

from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core.bronze import Layout, NewColumnsError, ingest
from lake_assets.orchestration.metadata import column_schema, uri_metadata
from lake_assets.orchestration.resources import LakeResource

BACKFILL_TAG = "dagster/backfill"
MAX_BATCHES_TAG = "lake/max_batches"


def daily_partitions(source: SourceConfig) -> DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so files that land today are ingested today.
    return DailyPartitionsDefinition(start_date=source.start_date.isoformat(), end_offset=1)


def bronze_key(source_name: str) -> AssetKey:
    return AssetKey(["bronze", source_name])


def bronze_asset(lake: LakeConfig, source: SourceConfig):
    layout = Layout(lake.warehouse, source.name)

    @asset(
        key=bronze_key(source.name),
        partitions_def=daily_partitions(source),
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31),
        pool=f"lake_bronze_{source.name}",
        group_name="bronze",
        kinds={"delta", "spark", "s3" if lake.landing.startswith("s3") else "json"},
        description=f"Append-only Delta table of every JSON record landed under {lake.landing}/{source.path} "
                    f"(schema_evolution_mode {source.schema_evolution_mode}).",
        metadata={**uri_metadata(layout.bronze), "landing": f"{lake.landing}/{source.path}"},
    )
    def _bronze(context: AssetExecutionContext, lake_resource: LakeResource) -> MaterializeResult:
        lake_now = lake_resource.lake()
        src = lake_now.source(source.name)
        days = context.partition_keys
        # A backfill re-reads every file of its days and replaces their rows; a normal run only takes new files.
        reprocess = BACKFILL_TAG in context.run.tags
        # A sensor's run is bounded to one batch (max_files_per_run / max_bytes_per_run).
        max_batches = int(context.run.tags[MAX_BATCHES_TAG]) if MAX_BATCHES_TAG in context.run.tags else None
        try:
            result = ingest(lake_resource.spark(), lake_now, src, days, reprocess=reprocess,
                            run_id=context.run.run_id, log=context.log.info,
                            progress=lambda done, total: context.log.info(f"{done}/{total} file(s) done"),
                            max_batches=max_batches)
        except NewColumnsError as exc:
            raise Failure(description=str(exc), metadata={"new_fields": MetadataValue.json(exc.fields),
                                                          "files": MetadataValue.json(exc.files[:50])}) from None
        metadata = {
            "files": result.files, "rows": result.records, "bytes": result.bytes,
            "malformed": result.malformed, "rescued_rows": result.rescued,
            "failed_files": MetadataValue.json(result.failed),
            "delta_version": result.table_version if result.table_version is not None else -1,
            "schema_version": result.schema_version if result.schema_version is not None else -1,
            "mode": "reprocess" if reprocess else "incremental",
            **column_schema(result.schema),
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
        return MaterializeResult(metadata=metadata)

    return _bronze
