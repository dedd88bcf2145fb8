"""The Dagster resource that hands the core its config and its Spark session."""

from __future__ import annotations

from dagster import ConfigurableResource

from lake_assets.config import LakeConfig, load_config


class LakeResource(ConfigurableResource):
    """The lake config (path, else $LAKE_CONFIG, else the demo) and the Spark session it names."""

    config_path: str | None = None

    def lake(self) -> LakeConfig:
        return load_config(self.config_path)

    def spark(self):
        from lake_assets.engine import spark_session

        return spark_session(self.lake().engine)
