"""The Dagster code location: `dagster dev -m lake_assets.definitions`.

Loading reads and validates the lake YAML only; no Spark, no S3 calls."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from dagster import BetaWarning, Definitions, PreviewWarning

from lake_assets.config import ConfigError, load_config
from lake_assets.orchestration.bronze import bronze_asset
from lake_assets.orchestration.checks import bronze_checks
from lake_assets.orchestration.jobs import OPERATOR_JOBS
from lake_assets.orchestration.resources import LakeResource
from lake_assets.orchestration.sensors import bronze_sensor
from lake_assets.orchestration.silver_gold import gold_asset, silver_asset


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
    return Definitions(
        assets=[bronze_asset(lake, source) for source in lake.sources.values()]
        + [silver_asset(lake, silver) for silver in lake.silver.values()]
        + [gold_asset(lake, gold) for gold in lake.gold.values()],
        asset_checks=[check for source in lake.sources.values() for check in bronze_checks(lake, source)],
        jobs=OPERATOR_JOBS,
        sensors=[bronze_sensor(lake, source) for source in lake.sources.values()],
        resources={"lake_resource": LakeResource(config_path=config_path)},
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
            raise SystemExit(2) from None
        raise


defs = _default_definitions()
