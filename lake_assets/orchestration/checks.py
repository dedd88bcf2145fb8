"""Asset checks on every bronze asset, per daily partition: rescued-data rate, malformed rate
and schema drift. They block downstream assets on ERROR (write-audit-publish)."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core import quality
from lake_assets.core.bronze import Layout
from lake_assets.orchestration import databricks
from lake_assets.orchestration.bronze import bronze_key, daily_partitions
from lake_assets.orchestration.resources import LakeResource


def _days(context: AssetCheckExecutionContext) -> list[str] | None:
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else None


def _graded(value: float, warn: float, error: float) -> tuple[bool, AssetCheckSeverity]:
    if value > error:
        return False, AssetCheckSeverity.ERROR
    if value > warn:
        return False, AssetCheckSeverity.WARN
    return True, AssetCheckSeverity.WARN


def bronze_checks(lake: LakeConfig, source: SourceConfig) -> list:
    key = bronze_key(source.name)
    partitions = daily_partitions(source)

    @asset_check(asset=key, name="rescued_data_rate", blocking=True, partitions_def=partitions,
                 description=f"Share of rows with {source.rescued_data_column}: WARN over "
                             f"{source.checks.rescued_rate_warn:.1%}, ERROR over {source.checks.rescued_rate_error:.1%}.")
    def rescued_data_rate(context: AssetCheckExecutionContext, lake_resource: LakeResource) -> AssetCheckResult:
        lake_now, limits = lake_resource.lake(), source.checks
        src = lake_now.source(source.name)
        rate = (databricks.measure(context, lake_now, "rescued_data_rate", src.name, _days(context))
                if lake_now.engine.kind == "databricks" else
                quality.rescued_rate(lake_resource.spark(), Layout(lake_now.warehouse, src.name),
                                     src.rescued_data_column, _days(context)))
        passed, severity = _graded(rate.rate, limits.rescued_rate_warn, limits.rescued_rate_error)
        return AssetCheckResult(passed=passed, severity=severity, metadata={
            "rows": rate.rows, "rescued_rows": rate.hits, "rescued_rate": rate.rate,
            "top_rescued_paths": MetadataValue.json(dict(rate.top_paths)),
            "warn_over": limits.rescued_rate_warn, "error_over": limits.rescued_rate_error})

    @asset_check(asset=key, name="malformed_rate", blocking=True, partitions_def=partitions,
                 description="Share of landed lines that were not JSON objects (kept in the quarantine table).")
    def malformed_rate(context: AssetCheckExecutionContext, lake_resource: LakeResource) -> AssetCheckResult:
        lake_now, limits = lake_resource.lake(), source.checks
        layout = Layout(lake_now.warehouse, source.name)
        rate = (databricks.measure(context, lake_now, "malformed_rate", source.name, _days(context))
                if lake_now.engine.kind == "databricks" else quality.malformed_rate(lake_resource.spark(), layout,
                                                                                    _days(context)))
        passed, severity = _graded(rate.rate, limits.malformed_rate_warn, limits.malformed_rate_error)
        return AssetCheckResult(passed=passed, severity=severity, metadata={
            "lines": rate.rows, "malformed": rate.hits, "malformed_rate": rate.rate,
            "quarantine_table": MetadataValue.path(layout.quarantine)})

    @asset_check(asset=key, name="schema_drift", blocking=True, partitions_def=partitions,
                 description="Fields added / removed / retyped against the accepted schema "
                             "(`lake schema accept`): additions WARN, removals and retypes ERROR.")
    def schema_drift(context: AssetCheckExecutionContext, lake_resource: LakeResource) -> AssetCheckResult:
        lake_now = lake_resource.lake()
        drift = (databricks.measure(context, lake_now, "schema_drift", source.name, _days(context))
                 if lake_now.engine.kind == "databricks" else quality.schema_drift(Layout(lake_now.warehouse,
                                                                                          source.name)))
        d = drift.diff
        return AssetCheckResult(
            passed=d.empty, severity=AssetCheckSeverity.ERROR if drift.breaking else AssetCheckSeverity.WARN,
            metadata={"accepted_version": drift.accepted_version if drift.accepted_version is not None else -1,
                      "current_version": drift.current_version if drift.current_version is not None else -1,
                      "added": MetadataValue.json(d.added), "removed": MetadataValue.json(d.removed),
                      "retyped": MetadataValue.json(d.retyped)})

    return [rescued_data_rate, malformed_rate, schema_drift]
