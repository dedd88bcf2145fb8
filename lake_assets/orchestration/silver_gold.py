"""silver/<name> and gold/<name> assets: daily partitions like their bronze source, one core run each.

Write-audit-publish per day: a run publishes only the days whose bronze checks did not ERROR
(`checks.blocked_days`); blocked days are never written or materialized. With `automation: true`
they follow bronze by Dagster's declarative automation."""

from collections.abc import Iterator

from dagster import (AssetExecutionContext, AssetKey, AssetMaterialization, AutomationCondition, AutomationContext,
                     AutomationResult, BackfillPolicy, Failure, MaterializeResult, MetadataValue, asset)
from dagster._core.storage.tags import AUTOMATION_CONDITION_TAG

from lake_assets.config import GoldConfig, LakeConfig, SilverConfig
from lake_assets.core import gold, silver
from lake_assets.orchestration import databricks
from lake_assets.orchestration.bronze import bronze_key, daily_partitions
from lake_assets.orchestration.checks import blocked_days, blocked_message
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
    raise Failure(description=blocked_message(blocked), metadata={"blocked_days": MetadataValue.json(blocked)})


def silver_asset(lake: LakeConfig, cfg: SilverConfig):
    key = silver_key(cfg.name)
    source = lake.source(cfg.source)

    @asset(
        key=key,
        deps=[bronze_key(cfg.source)],
        partitions_def=daily_partitions(source),
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31),
        group_name="silver",
        kinds={"delta", "spark"},
        description=f"Silver table ({cfg.mode}) from bronze/{cfg.source}"
                    + (f", keys {cfg.keys}, latest by {cfg.sequence_by}" if cfg.keys else "")
                    + (f"; expectations: {', '.join(cfg.expectations)}" if cfg.expectations else "") + ".",
        metadata={**table_metadata(silver.table_uri(lake, cfg.name), f"silver.{cfg.name}"), "mode": cfg.mode},
        automation_condition=follow_upstream(True) if cfg.automation else None,
        output_required=False,
        owners=cfg.owners or None,
        tags=cfg.tags or None,
    )
    def _silver(context: AssetExecutionContext, lake_resource: LakeResource):
        lake_now = lake_resource.lake()
        cfg_now = lake_now.silver[cfg.name]
        days = list(context.partition_keys)
        blocked = blocked_days(context.instance, [bronze_key(cfg.source)], days)
        publish = [d for d in days if d not in blocked]
        common, per_day = {}, {}
        if publish:
            try:
                if lake_now.engine.kind == "databricks":
                    result, _ = databricks.run_step(context, lake_now, "silver", cfg.name, publish)
                else:
                    result = silver.run(lake_resource.spark(), lake_now, cfg_now, publish, log=context.log.info)
            except silver.ExpectationFailed as exc:
                raise Failure(description=str(exc), metadata={"failed": MetadataValue.json(exc.failures)}) from None
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
                common["quarantine_table"] = MetadataValue.text(silver.quarantine_uri(lake_now, cfg.name))
            per_day = {day: {"rows": result.day_rows.get(day, 0)} for day in publish}
        yield from _publish(context, key, blocked, common, per_day)

    return _silver


def _bronze_sources(lake: LakeConfig, cfg: GoldConfig) -> list[AssetKey]:
    return sorted({bronze_key(lake.silver[name].source) for name in cfg.source}, key=lambda k: k.path)


def gold_asset(lake: LakeConfig, cfg: GoldConfig):
    first_source = lake.source(lake.silver[cfg.source[0]].source)
    partitioned = cfg.partitioned
    key = gold_key(cfg.name)

    @asset(
        key=key,
        deps=[silver_key(name) for name in cfg.source],
        partitions_def=daily_partitions(first_source) if partitioned else None,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=31) if partitioned else None,
        group_name="gold",
        kinds={"delta", "spark"},
        description=f"Gold table from SQL over {', '.join('silver/' + s for s in cfg.source)}; "
                    + ("each daily partition recomputed and replaced atomically." if partitioned
                       else "rebuilt whole on every run."),
        metadata={**table_metadata(gold.table_uri(lake, cfg.name), f"gold.{cfg.name}"),
                  "sql": MetadataValue.md(f"```sql\n{cfg.sql}\n```")},
        automation_condition=follow_upstream(partitioned) if cfg.automation else None,
        output_required=False,
        owners=cfg.owners or None,
        tags=cfg.tags or None,
    )
    def _gold(context: AssetExecutionContext, lake_resource: LakeResource):
        lake_now = lake_resource.lake()
        days = list(context.partition_keys) if partitioned else None
        blocked = blocked_days(context.instance, _bronze_sources(lake_now, cfg), days) if days else {}
        publish = [d for d in days if d not in blocked] if days is not None else None
        common, per_day = {}, {}
        if publish is None or publish:
            if lake_now.engine.kind == "databricks":
                result, _ = databricks.run_step(context, lake_now, "gold", cfg.name, publish)
            else:
                result = gold.run(lake_resource.spark(), lake_now, lake_now.gold[cfg.name], publish,
                                  log=context.log.info)
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
