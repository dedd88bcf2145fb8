"""The code location's executor: Dagster's default (multiprocess, or in_process by run config),
except that a run of one step runs it in the run's own process. A step subprocess imports the code
location and starts an engine again only to run beside nothing: for a sensor's bronze run of one
small file that was ~10 s of a ~30 s run (benchmarks/dagster_overhead.py)."""

from __future__ import annotations

from dagster import Executor, executor, multi_or_in_process_executor, multiple_process_executor_requirements
from dagster._core.executor.in_process import InProcessExecutor


class _OneStepInProcess(Executor):
    """The multiprocess executor, but a plan with a single step runs in process (same retries)."""

    def __init__(self, multiprocess: Executor):
        self._multiprocess = multiprocess
        self._in_process = InProcessExecutor(retries=multiprocess.retries,
                                             step_dependency_config=multiprocess.step_dependency_config)

    @property
    def retries(self):
        return self._multiprocess.retries

    @property
    def step_dependency_config(self):
        return self._multiprocess.step_dependency_config

    def execute(self, plan_context, execution_plan):
        one = len(execution_plan.step_keys_to_execute) == 1
        return (self._in_process if one else self._multiprocess).execute(plan_context, execution_plan)


@executor(name="lake_executor", config_schema=multi_or_in_process_executor.config_schema,
          requirements=lambda config: multiple_process_executor_requirements() if "multiprocess" in config else [])
def lake_executor(init_context) -> Executor:
    """`execution: config: multiprocess` (the default) or `in_process`, as Dagster's default
    executor; with multiprocess, a run of a single step (a bronze or silver run of one asset) runs
    that step in the run worker instead of a subprocess."""
    chosen = multi_or_in_process_executor.executor_creation_fn(init_context)
    return chosen if isinstance(chosen, InProcessExecutor) else _OneStepInProcess(chosen)
