"""The bronze checks as Dagster sees them: specs declared on the bronze asset, evaluated inside its
step (one process, one engine), one result per check per day. A day with an ERROR is recorded as
blocked on its materialization; silver and gold publish only the days that are not."""

from __future__ import annotations

from collections.abc import Iterator

from dagster import (AssetCheckEvaluation, AssetCheckKey, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext,
                     AssetKey, AssetRecordsFilter, DagsterInstance, Failure, MetadataValue, Output)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from lake_assets.config import SourceConfig
from lake_assets.core import quality

BLOCKED = "lake/blocked"   # materialization metadata of a bronze day: the ERROR checks, or "" when none


def check_specs(source: SourceConfig, key: AssetKey) -> list[AssetCheckSpec]:
    c = source.checks
    described = {
        "rescued_data_rate": "Rows with rescued data this day, by class (type conflict / unknown field / name "
                             f"collision): type conflicts WARN over {_limit(c.type_conflict_rate_warn)}, ERROR over "
                             f"{_limit(c.type_conflict_rate_error)}; once {c.baseline_min_days} earlier days exist, "
                             f"a rise of {c.rescued_jump_warn_points} / {c.rescued_jump_error_points} points over the "
                             f"median of the last {c.baseline_days} days WARNs / ERRORs.",
        "malformed_rate": f"Lines of the day that were not JSON objects (quarantined): WARN over "
                          f"{_limit(c.malformed_rate_warn)}, ERROR over {_limit(c.malformed_rate_error)}.",
        "unreadable_files": f"Files of the day that could not be read (the ledger's failed rows): {c.unreadable_files.upper()}.",
        "schema_drift": "The day's schema against the accepted one (`lake schema accept` / accept_schema job): "
                        "additions WARN, removals and retypes ERROR.",
    }
    return [AssetCheckSpec(name, asset=key, blocking=True, description=described[name]) for name in quality.CHECKS]


def _limit(share: float | None) -> str:
    return quality.pct(share) if share is not None else "(off)"


def _metadata(values: dict) -> dict:
    return {k: MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in values.items() if v is not None}


def evaluations(context: AssetExecutionContext, key: AssetKey, audits: dict[str, quality.DayAudit]) -> Iterator:
    """One evaluation per check and day, pointing at that day's materialization in this run.
    Not `blocking` in Dagster's sense, which would fail the whole step and every day with it:
    the day is blocked instead (see BLOCKED and `blocked_days`)."""
    selected = context.selected_asset_check_keys
    for check_key in selected:   # each check's (Nothing) output, which Dagster requires once per step
        yield Output(None, output_name=context.job_def.asset_layer.get_op_output_name(check_key))
    instance, run_id = context.instance, context.run.run_id
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=list(audits)),
                                              limit=len(audits)).records
    target = {r.partition_key: AssetCheckEvaluationTargetMaterializationData(
        storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp) for r in records if r.run_id == run_id}
    for day, audit in audits.items():
        for v in audit.verdicts:
            if AssetCheckKey(key, v.check) not in selected:
                continue
            yield AssetCheckEvaluation(
                asset_key=key, check_name=v.check, passed=v.passed, partition=day,
                severity=AssetCheckSeverity.ERROR if v.level == quality.ERROR else AssetCheckSeverity.WARN,
                description=("" if v.passed else f"{v.level}: ") + v.description,
                metadata=_metadata(v.metadata), target_materialization_data=target.get(day), blocking=False)


def blocked_reason(audit: quality.DayAudit) -> str:
    return "; ".join(f"{v.check} ERROR: {v.description}" for v in audit.blocked_by)


def blocked_message(blocked: dict[str, str]) -> str:
    """The run failure of blocked days, with each failing check's figure."""
    return (f"blocking check(s) failed with ERROR severity on {len(blocked)} day(s); not published to silver/gold: "
            + " | ".join(f"{day}: {why}" for day, why in sorted(blocked.items())))


def blocked_failure(blocked: dict[str, str]) -> Failure:
    return Failure(description=blocked_message(blocked), metadata={"blocked_days": MetadataValue.json(blocked)})


def blocked_days(instance: DagsterInstance, keys: list[AssetKey], days: list[str]) -> dict[str, str]:
    """{day: why} for the days whose latest bronze materialization (of any of `keys`) is blocked."""
    out: dict[str, list[str]] = {}
    for key in keys:
        for day in days:
            latest = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[day]),
                                                     limit=1).records
            why = latest[0].asset_materialization.metadata.get(BLOCKED) if latest else None
            if why is not None and why.value:
                out.setdefault(day, []).append(f"{key.to_user_string()}: {why.value}")
    return {day: "; ".join(found) for day, found in out.items()}
