"""The Dagster code location: `dagster dev -m lake_assets.definitions`.

Loading reads and validates the lake YAML and the latest schema-log document of each source (for
the column schema; bounded in time, absence tolerated); no Spark."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from dagster import (AssetSelection, AutomationConditionSensorDefinition, BetaWarning, DefaultSensorStatus,
                     Definitions, PreviewWarning)

from lake_assets.config import ConfigError, load_config
from lake_assets.orchestration.bronze import bronze_asset
from lake_assets.orchestration.executor import lake_executor
from lake_assets.orchestration.jobs import OPERATOR_JOBS
from lake_assets.orchestration.resources import LakeResource
from lake_assets.orchestration.sensors import bronze_sensor
from lake_assets.orchestration.silver_gold import gold_asset, silver_asset, silver_key


# Partitioned asset checks and backfill policies are marked beta/preview; we rely on them knowingly.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
# pyspark keeps its Spark Connect logger disabled unless SPARK_CONNECT_LOG_LEVEL is set, but Dagster's
# logging.config.dictConfig re-enables every existing logger, which then prints each handled gRPC
# error (e.g. "is this a Delta table yet?") as a JSON record. Keep it quiet, as pyspark intends.
if "SPARK_CONNECT_LOG_LEVEL" not in os.environ:
    warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*")  # as engine.spark_session does
    from pyspark.sql.connect.logging import logger as _spark_connect_logger

    _spark_connect_logger.setLevel(logging.CRITICAL)


def build_definitions(config_path: str | None = None) -> Definitions:
    lake = load_config(config_path)
    downstream = {name: {silver_key(s.name) for s in lake.silver.values() if s.source == name} for name in lake.sources}
    return Definitions(
        assets=[bronze_asset(lake, source, downstream[source.name]) for source in lake.sources.values()]
        + [silver_asset(lake, silver) for silver in lake.silver.values()]
        + [gold_asset(lake, gold) for gold in lake.gold.values()],
        jobs=OPERATOR_JOBS,
        sensors=[bronze_sensor(lake, source) for source in lake.sources.values()]
        + [AutomationConditionSensorDefinition(
            "lake_automation", target=AssetSelection.groups("silver", "gold"), minimum_interval_seconds=30,
            default_status=DefaultSensorStatus.RUNNING, use_user_code_server=True,  # runs UpstreamDayBlocked
            description="Materializes silver and gold days after bronze (tables with automation: true).")],
        resources={"lake_resource": LakeResource(config_path=config_path)},
        executor=lake_executor,
    )


def _default_definitions() -> Definitions:
    try:
        return build_definitions()
    except ConfigError as exc:
        # A one-shot `dagster asset|definitions|job …` command: the config's problems, not an import
        # traceback ending in them. Servers (dagster dev's code server) keep the error for the UI.
        if Path(sys.argv[0]).name in ("dagster", "__main__.py") and sys.argv[1:2] in (["asset"], ["definitions"],
                                                                                        ["job"]):
            print(f"lake_assets.definitions: cannot load the lake config:\n{exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        raise


defs = _default_definitions()
