"""Operator jobs: the same actions as the `lake` CLI, launchable from the Dagster UI."""

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op

from lake_assets.core.operations import repair, validate
from lake_assets.core.promote import PromoteError, promote
from lake_assets.orchestration.resources import LakeResource


class PromoteConfig(Config):
    source: str
    path: str                 # e.g. device.fw.patch
    type: str | None = None   # Spark DDL; default: inferred from the rescued values


@op
def promote_rescued_field_op(context: OpExecutionContext, config: PromoteConfig, lake_resource: LakeResource):
    lake = lake_resource.lake()
    try:
        done = promote(lake_resource.spark(), lake, lake.source(config.source), config.path, config.type,
                       log=context.log.info)
    except PromoteError as exc:
        raise Failure(description=str(exc)) from None
    context.add_output_metadata({"path": done.path, "type": done.type, "schema_version": done.schema_version,
                                 "rows_moved": done.rows_moved, "rows_left_rescued": done.rows_left})


@job(description="Make a rescued field a column of its bronze table and move its historic values into it.")
def promote_rescued_field():
    promote_rescued_field_op()


@op
def validate_op(context: OpExecutionContext, lake_resource: LakeResource):
    lake = lake_resource.lake()
    found = {name: validate(lake_resource.spark(), lake, source).describe() for name, source in lake.sources.items()}
    problems = {name: lines for name, lines in found.items() if lines}
    if problems:
        raise Failure(description=f"{sum(map(len, problems.values()))} ingestion problem(s); run the repair job",
                      metadata={"problems": MetadataValue.json(problems)})
    context.log.info("ledger and tables agree for every source")


@job(description="Check every source's ledger against its tables (fails on problems).")
def validate_ingestion():
    validate_op()


@op
def repair_op(context: OpExecutionContext, lake_resource: LakeResource):
    lake = lake_resource.lake()
    for source in lake.sources.values():
        found = repair(lake_resource.spark(), lake, source, log=context.log.info)
        context.log.info(f"{source.name}: repaired {found.count} problem(s)")


@job(description="Fix what validate_ingestion finds (idempotent).")
def repair_ingestion():
    repair_op()


OPERATOR_JOBS = [promote_rescued_field, validate_ingestion, repair_ingestion]
