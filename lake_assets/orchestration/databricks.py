"""`engine: databricks`: a step's core work runs as a Databricks job through Dagster Pipes.

The job installs the lake_assets wheel and runs its `lake-remote` entry point (lake_assets.remote)
on an existing cluster, a new job cluster, or serverless. Context and messages travel through a
Unity Catalog Volume for all three. The step gets back the core's own result dataclass (and for
bronze the per-day audits of the checks, run on the cluster too), so the asset body reports it
exactly as it reports a local run.

Two pitfalls of the Pipes client are handled here: the single-task `run()` swallows an interrupt
and reports success (we submit through `run_multi_task`, which cancels the job and re-raises), and
a job that never opened Pipes "succeeds" without a word (we fail the step without its result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, Failure, MetadataValue
from dagster._core.errors import DagsterPipesExecutionError  # what the Databricks client raises on a failed run
from dagster_pipes import PipesExtras

from lake_assets.config import DatabricksConfig, LakeConfig
from lake_assets.core import quality
from lake_assets.remote import decode, decode_audit

ENTRY_POINT = "lake-remote"


def workspace_client():
    """The Databricks SDK's own auth (DATABRICKS_HOST / DATABRICKS_TOKEN, a profile, OAuth ...)."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient()


def pipes_client(db: DatabricksConfig, client):
    from dagster_databricks import PipesDatabricksClient
    from dagster_databricks.pipes import (PipesDatabricksServerlessClient, PipesUnityCatalogVolumesContextInjector,
                                          PipesUnityCatalogVolumesMessageReader)

    if not (db.existing_cluster_id or db.new_cluster):
        return PipesDatabricksServerlessClient(client=client, volume_path=db.volume,
                                               poll_interval_seconds=db.poll_interval_seconds)
    # Clusters too use the Volume (not DBFS, which serverless and UC-only workspaces lack).
    return PipesDatabricksClient(
        client=client, poll_interval_seconds=db.poll_interval_seconds,
        context_injector=PipesUnityCatalogVolumesContextInjector(client=client, volume_path=db.volume),
        message_reader=PipesUnityCatalogVolumesMessageReader(client=client, volume_path=db.volume))


def task_and_args(db: DatabricksConfig, step: str, name: str):
    """The submitted task (and jobs.submit arguments): the wheel's entry point on the configured compute."""
    from databricks.sdk.service import compute, jobs

    task = {"task_key": f"lake_{step}_{name}",
            "python_wheel_task": {"package_name": "lake_assets", "entry_point": ENTRY_POINT, "parameters": []}}
    submit_args: dict = {"run_name": f"lake_assets {step}/{name}"}
    if db.existing_cluster_id or db.new_cluster:
        task["libraries"] = [{"whl": db.wheel}]
        task.update({"existing_cluster_id": db.existing_cluster_id} if db.existing_cluster_id
                    else {"new_cluster": dict(db.new_cluster)})
    else:  # serverless: the wheel is a dependency of the task's environment
        task["environment_key"] = "lake_assets"
        submit_args["environments"] = [jobs.JobEnvironment(
            environment_key="lake_assets",
            spec=compute.Environment(environment_version=db.environment_version, dependencies=[db.wheel]))]
    return jobs.SubmitTask.from_dict(task), submit_args


def run_step(context: AssetExecutionContext, lake: LakeConfig, step: str, name: str, days: list[str] | None,
             options: dict | None = None) -> tuple[Any, dict[str, quality.DayAudit]]:
    """Run one asset step (bronze / silver / gold) of `name` as a Databricks job: the core's result
    and, for bronze, the audit of its days (quality.DayAudit), computed on the cluster after the
    ingest. The Databricks run and the Unity Catalog table name go to the asset's metadata."""
    result, report, run_metadata = run_job(context, lake, step, name, days, options)
    if report["table_name"]:
        run_metadata["dagster/table_name"] = report["table_name"]
    context.add_asset_metadata({k: v if isinstance(v, (str, int, float, MetadataValue)) else MetadataValue.json(v)
                                for k, v in run_metadata.items()})
    return result, {day: decode_audit(a) for day, a in report["audits"].items()}


def run_job(context, lake: LakeConfig, step: str, name: str, days: list[str] | None, options: dict | None = None,
            client=None):
    """(the core's result, the job's report, the Databricks run's metadata) of one step run as a job."""
    db = lake.engine.databricks
    client = client or workspace_client()
    task, submit_args = task_and_args(db, step, name)
    extras: PipesExtras = {"step": step, "name": name, "days": days, "options": options or {},
                           "config": Path(lake.file).read_text(), "config_file": lake.file}
    try:
        invocation = pipes_client(db, client).run_multi_task(context=context, tasks=[task], extras=extras,
                                                             submit_args=submit_args)
    except DagsterPipesExecutionError as exc:
        raise Failure(description=f"{step}/{name} failed on Databricks: {exc}") from None
    messages = [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "result" in m]
    if not messages:
        raise Failure(description=f"the Databricks job of {step}/{name} ended without reporting a result "
                                  "(did it open Dagster Pipes? is the lake_assets wheel installed?)")
    report = messages[-1]
    return decode(step, report["result"]), report, dict(invocation.metadata)
