"""silver/<name> and gold/<name> assets: daily partitions like their bronze source, one core run each.

Write-audit-publish per day: a run publishes only the days whose bronze checks did not ERROR
(`checks.blocked_days`); blocked days are never written or materialized. With `automation: true`
they follow bronze by Dagster's declarative automation."""

from collections.abc import Iterator

from dagster import (AssetExecutionContext, AssetKey, AssetMaterialization, AutomationCondition, AutomationContext,
                     AutomationResult, BackfillPolicy, MaterializeResult, MetadataValue, asset)
from dagster._core.storage.tags import AUTOMATION_CONDITION_TAG

from lake_assets.config import GoldConfig, LakeConfig, SilverConfig
from lake_assets.core import gold, silver
from lake_assets.core.layout import gold_uri, silver_quarantine_uri, silver_uri
from lake_assets.orchestration import databricks
from lake_assets.orchestration.bronze import bronze_key, daily_partitions
from lake_assets.orchestration.checks import blocked_days, blocked_failure, blocked_message
from lake_assets.orchestration.failures import as_failure
from lake_assets.orchestration.metadata import column_schema, table_metadata
from lake_assets.orchestration.resources import LakeResource


def silver_key(name: str) -> AssetKey:
    return AssetKey(["silver", name])


def gold_key(name: str) -> AssetKey:
    return AssetKey(["gold", name])


class UpstreamDayBlocked(AutomationCondition):
    """True for the days whose bronze day upstream is blocked (an ERROR check; `checks.blocked_days`).
    Dagster's check conditions cannot tell a WARN from an ERROR, so this reads what bronze recorded."""

    @property
    def name(self) -> str:
        return "upstream_day_blocked"

    def evaluate(self, context: AutomationContext) -> AutomationResult:
        days = sorted(context.candidate_subset.expensively_compute_partition_keys())
        bronze, todo = set(), [context.key]
        while todo:   # the bronze assets upstream of this one
            for parent in context.asset_graph.get(todo.pop()).parent_keys:
                (bronze.add if parent.path[0] == "bronze" else todo.append)(parent)
        blocked = blocked_days(context.asset_graph_view.instance, sorted(bronze, key=lambda k: k.path), days) \
            if days else {}
        return AutomationResult(context, context.asset_graph_view.get_subset_from_partition_keys(
            context.key, context.partitions_def, set(blocked)))


def follow_upstream(partitioned: bool) -> AutomationCondition:
    """Run a day when an upstream day was updated — any day, not only the latest (late files and
    backfills flow too) — once nothing upstream is missing or running. Unlike Dagster's
    any_deps_updated, an update by a run that also targeted this asset counts: a range run that
    published silver but failed on a blocked day never ran gold for the others. A run that did
    update both is no trigger: the later update of this asset resets the condition."""
    updated = AutomationCondition.any_deps_match(
        AutomationCondition.newly_updated() | AutomationCondition.will_be_requested()).with_label("any_deps_updated")
    condition = (updated.since_last_handled()
                 & ~AutomationCondition.any_deps_in_progress() & ~AutomationCondition.in_progress())
    if partitioned:   # last, so it only looks up the few days the rest let through
        condition = condition & ~AutomationCondition.any_deps_missing() & ~UpstreamDayBlocked()
    return condition.with_label("follow_upstream")


def _expectation_metadata(result: silver.SilverResult) -> dict:
    out = {"expectations": MetadataValue.json(result.expectations)} if result.expectations else {}
    for name, e in result.expectations.items():
        out[f"expectation/{name}/passed"] = e["passed"]
        out[f"expectation/{name}/failed"] = e["failed"]
    return out


def _publish(context: AssetExecutionContext, key: AssetKey, blocked: dict[str, str], common: dict,
             per_day: dict[str, dict]) -> Iterator:
    """Materialize the published days, each with its own facts. With blocked days in the run, only
    the others get a materialization; the step then fails naming them (an automation run skips
    them quietly: its condition leaves blocked days out, this covers a day blocked meanwhile)."""
    if not blocked:
        for day, facts in per_day.items():
            context.add_asset_metadata(facts, partition_key=day)
        yield MaterializeResult(metadata=common)
        return
    for day, facts in per_day.items():
        yield AssetMaterialization(asset_key=key, partition=day, metadata={**common, **facts})
    if AUTOMATION_CONDITION_TAG in context.run.tags:
        context.log.warning(blocked_message(blocked))
        return
    raise blocked_failure(blocked)


def _asset_args(cfg: SilverConfig | GoldConfig, partitions_def, layer: str) -> dict:
    """What the silver and gold assets declare alike."""
    return dict(
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31) if partitions_def else None,
        group_name=layer, kinds={"delta", "spark"},
        automation_condition=follow_upstream(partitions_def is not None) if cfg.automation else None,
        output_required=False, owners=cfg.owners or None, tags=cfg.tags or None,
    )


def _run(context: AssetExecutionContext, lake_resource: LakeResource, lake: LakeConfig, step: str, name: str,
         days: list[str] | None):
    """One silver or gold run, on the Databricks cluster or here; a LakeError fails the step."""
    with as_failure():
        if lake.engine.kind == "databricks":
            return databricks.run_step(context, lake, step, name, days)[0]
        run, cfg = (silver.run, lake.silver[name]) if step == "silver" else (gold.run, lake.gold[name])
        return run(lake_resource.spark(), lake, cfg, days, log=context.log.info)


def silver_asset(lake: LakeConfig, cfg: SilverConfig):
    key = silver_key(cfg.name)

    @asset(
        key=key, deps=[bronze_key(cfg.source)], **_asset_args(cfg, daily_partitions(lake.source(cfg.source)), "silver"),
        description=f"Silver table ({cfg.mode}) from bronze/{cfg.source}"
                    + (f", keys {cfg.keys}, latest by {cfg.sequence_by}" if cfg.keys else "")
                    + (f"; expectations: {', '.join(cfg.expectations)}" if cfg.expectations else "") + ".",
        metadata={**table_metadata(silver_uri(lake.warehouse, cfg.name), f"silver.{cfg.name}"), "mode": cfg.mode},
    )
    def _silver(context: AssetExecutionContext, lake_resource: LakeResource):
        lake_now = lake_resource.lake()
        days = list(context.partition_keys)
        blocked = blocked_days(context.instance, [bronze_key(cfg.source)], days)
        publish = [d for d in days if d not in blocked]
        common, per_day = {}, {}
        if publish:
            result = _run(context, lake_resource, lake_now, "silver", cfg.name, publish)
            common = _silver_metadata(result, lake_now)
            per_day = {day: {"rows": result.day_rows.get(day, 0)} for day in publish}
        yield from _publish(context, key, blocked, common, per_day)

    return _silver


def _silver_metadata(result: silver.SilverResult, lake: LakeConfig) -> dict:
    common = {
        "rows_read": result.rows_read, "rows_written": result.rows_written,
        "rows_dropped": result.rows_dropped, "rows_quarantined": result.rows_quarantined,
        "table_rows": result.table_rows,
        "delta_version": result.table_version if result.table_version is not None else -1,
        **_expectation_metadata(result),
        **column_schema(result.schema),
    }
    if result.current_rows is not None:
        common["current_rows"] = result.current_rows
    if result.rows_quarantined:
        common["quarantine_table"] = MetadataValue.text(silver_quarantine_uri(lake.warehouse, result.name))
    return common


def _bronze_sources(lake: LakeConfig, cfg: GoldConfig) -> list[AssetKey]:
    return sorted({bronze_key(lake.silver[name].source) for name in cfg.source}, key=lambda k: k.path)


def gold_asset(lake: LakeConfig, cfg: GoldConfig):
    partitioned = cfg.partitioned
    key = gold_key(cfg.name)
    first_source = lake.source(lake.silver[cfg.source[0]].source)

    @asset(
        key=key, deps=[silver_key(name) for name in cfg.source],
        **_asset_args(cfg, daily_partitions(first_source) if partitioned else None, "gold"),
        description=f"Gold table from SQL over {', '.join('silver/' + s for s in cfg.source)}; "
                    + ("each daily partition recomputed and replaced atomically." if partitioned
                       else "rebuilt whole on every run."),
        metadata={**table_metadata(gold_uri(lake.warehouse, cfg.name), f"gold.{cfg.name}"),
                  "sql": MetadataValue.md(f"```sql\n{cfg.sql}\n```")},
    )
    def _gold(context: AssetExecutionContext, lake_resource: LakeResource):
        lake_now = lake_resource.lake()
        days = list(context.partition_keys) if partitioned else None
        blocked = blocked_days(context.instance, _bronze_sources(lake_now, cfg), days) if days else {}
        publish = [d for d in days if d not in blocked] if days is not None else None
        common, per_day = {}, {}
        if publish is None or publish:
            result = _run(context, lake_resource, lake_now, "gold", cfg.name, publish)
            common = {
                "rows_written": sum(result.rows_written.values()), "table_rows": result.table_rows,
                "delta_version": result.table_version if result.table_version is not None else -1,
                **column_schema(result.schema),
            }
            per_day = {day: {"rows": n} for day, n in result.rows_written.items() if day != "*"}
        if not partitioned:
            yield MaterializeResult(metadata=common)
            return
        yield from _publish(context, key, blocked, common, per_day)

    return _gold
