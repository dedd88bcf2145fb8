"""Operator jobs: the same actions as the `lake` CLI, launchable from the Dagster UI."""

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from lake_assets.core.layout import Layout
from lake_assets.core.operations import repair, validate
from lake_assets.core.promote import promote
from lake_assets.core.schema_log import SchemaLog
from lake_assets.orchestration.failures import as_failure
from lake_assets.orchestration.resources import LakeResource


class PromoteConfig(Config):
    source: str = Field(description="The source whose bronze table gets the column (a key of `sources:`).")
    path: str = Field(description="Field path of the rescued field, e.g. device.fw.patch (not inside arrays).")
    type: str | None = Field(None, description="Spark DDL type of the new column, e.g. BIGINT or DOUBLE; "
                                               "default: inferred from the rescued values.")


class AcceptSchemaConfig(Config):
    source: str = Field(description="The source whose current (or pending failOnNewColumns) schema becomes the "
                                    "accepted one the schema_drift check compares against.")


@op
def promote_rescued_field_op(context: OpExecutionContext, config: PromoteConfig, lake_resource: LakeResource):
    lake = lake_resource.lake()
    with as_failure():
        done = promote(lake_resource.spark(), lake, lake.source(config.source), config.path, config.type,
                       log=context.log.info)
    context.add_output_metadata({"path": done.path, "type": done.type, "schema_version": done.schema_version,
                                 "rows_moved": done.rows_moved, "rows_left_rescued": done.rows_left})


@job(description="Make a rescued field a column of its bronze table and move its historic values into it.")
def promote_rescued_field():
    promote_rescued_field_op()


@op
def accept_schema_op(context: OpExecutionContext, config: AcceptSchemaConfig, lake_resource: LakeResource):
    lake = lake_resource.lake()
    source = lake.source(config.source)
    with as_failure(f"source {source.name!r}: "):
        version = SchemaLog(Layout(lake.warehouse, source.name).schemas).accept()
    context.log.info(f"{source.name}: accepted schema version {version.version}")
    context.add_output_metadata({"source": source.name, "accepted_version": version.version,
                                 "changes": MetadataValue.json(version.changes)})


@job(description="Accept a source's current schema (and a pending failOnNewColumns one) as the schema_drift "
                 "baseline, like `lake schema accept`; rerun bronze for a day to re-check it.")
def accept_schema():
    accept_schema_op()


@op
def validate_op(context: OpExecutionContext, lake_resource: LakeResource):
    lake = lake_resource.lake()
    with as_failure():
        found = {name: validate(lake_resource.spark(), lake, source).describe()
                 for name, source in lake.sources.items()}
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
        with as_failure(f"{source.name}: "):
            found = repair(lake_resource.spark(), lake, source, log=context.log.info)
        context.log.info(f"{source.name}: repaired {found.count} problem(s)")


@job(description="Fix what validate_ingestion finds (idempotent).")
def repair_ingestion():
    repair_op()


OPERATOR_JOBS = [promote_rescued_field, accept_schema, validate_ingestion, repair_ingestion]
