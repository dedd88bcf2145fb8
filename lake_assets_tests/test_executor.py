"""The code location's executor: a run of one step runs it in the run worker's process; a run of
several steps gives each its own process, as Dagster's default executor does; run config can still
choose in_process. Real runs on a persistent instance (execute_in_process would replace the executor)."""

import os

from dagster import DagsterInstance, In, Nothing, Output, execute_job, job, op, reconstructable

from lake_assets.orchestration.executor import lake_executor


@op
def first():
    yield Output(None, metadata={"pid": os.getpid()})


@op(ins={"after": In(Nothing)})
def second():
    yield Output(None, metadata={"pid": os.getpid()})


@job(executor_def=lake_executor)
def one_step():
    first()


@job(executor_def=lake_executor)
def two_steps():
    second(after=first())


def _step_pids(result) -> dict[str, int]:
    return {e.step_key: e.step_output_data.metadata["pid"].value for e in result.all_events if e.is_successful_output}


def _run(job_fn, tmp_path, run_config=None) -> tuple[bool, dict[str, int]]:
    (tmp_path / "home").mkdir(exist_ok=True)
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        with execute_job(reconstructable(job_fn), instance, run_config=run_config) as result:
            return result.success, _step_pids(result)


def test_one_step_runs_in_the_run_process_and_several_in_their_own(tmp_path):
    assert _run(one_step, tmp_path) == (True, {"first": os.getpid()})
    ok, pids = _run(two_steps, tmp_path)
    assert ok and set(pids) == {"first", "second"} and os.getpid() not in pids.values()
    in_process = {"execution": {"config": {"in_process": {}}}}
    assert _run(two_steps, tmp_path, in_process) == (True, {"first": os.getpid(), "second": os.getpid()})


def test_the_code_locations_asset_jobs_use_it():
    from lake_assets.definitions import defs

    assert defs.resolve_implicit_global_asset_job_def().executor_def is lake_executor
