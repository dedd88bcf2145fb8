"""The lake YAML: read once, validated into typed objects; errors name the file and the key."""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lake_assets.core.schema import SchemaError, parse_hints
from lake_assets.errors import LakeError

DEMO_CONFIG = Path(__file__).parent / "demo" / "lake.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
EVOLUTION_MODES = ("addNewColumns", "rescue", "failOnNewColumns", "none")


class ConfigError(LakeError, ValueError):
    """The lake config is wrong; the message names the file, the key and what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EngineConfig(_Strict):
    kind: Literal["embedded", "spark_connect"] = "embedded"
    remote: str | None = None          # sc://host:port for spark_connect

    @model_validator(mode="after")
    def _remote_needed(self):
        if self.kind == "spark_connect" and not (self.remote or "").startswith("sc://"):
            raise ValueError("kind spark_connect needs remote: sc://host:port")
        return self


class ChecksConfig(_Strict):
    rescued_rate_warn: float = Field(0.01, ge=0, le=1)
    rescued_rate_error: float = Field(0.10, ge=0, le=1)
    malformed_rate_warn: float = Field(0.001, ge=0, le=1)
    malformed_rate_error: float = Field(0.05, ge=0, le=1)


class SourceConfig(_Strict):
    name: str = ""
    path: str
    format: Literal["json"] = "json"
    start_date: dt.date
    schema_evolution_mode: Literal["addNewColumns", "rescue", "failOnNewColumns", "none"] = "addNewColumns"
    schema_hints: str = ""
    rescued_data_column: str = "_rescued_data"
    on_overwrite: Literal["reprocess", "ignore", "fail"] = "reprocess"
    max_files_per_run: int = Field(1000, gt=0)
    max_bytes_per_run: int = Field(10 * 1024**3, gt=0)
    claim_timeout_minutes: int = Field(120, gt=0)
    # File discovery for the sensor (Auto Loader: useNotifications, queueUrl, backfillInterval).
    use_notifications: bool = False
    queue_url: str | None = None
    backfill_interval_hours: float = Field(24, gt=0)
    lookback_days: int = Field(2, ge=1)
    checks: ChecksConfig = ChecksConfig()

    @field_validator("schema_hints")
    @classmethod
    def _hints_parse(cls, value: str) -> str:
        try:
            parse_hints(value)
        except SchemaError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("rescued_data_column")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError("must be a plain column name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _queue_for_notifications(self):
        if self.use_notifications and not self.queue_url:
            raise ValueError("use_notifications needs queue_url (the SQS queue receiving the S3 events)")
        return self

    @property
    def hints(self):
        return parse_hints(self.schema_hints)


class Expectation(_Strict):
    expr: str
    on_violation: Literal["warn", "drop", "quarantine", "fail"] = "warn"


class SilverConfig(_Strict):
    name: str = ""
    source: str = Field(alias="from")
    select: list[str] = ["*"]
    keys: list[str] = []
    sequence_by: str | None = None
    mode: Literal["append", "upsert", "scd2"] = "append"
    expectations: dict[str, Expectation] = {}
    track_history_columns: list[str] | None = None
    track_history_except_columns: list[str] | None = None
    delete_when: str | None = None
    valid_from_column: str = "valid_from"
    valid_to_column: str = "valid_to"
    is_current_column: str = "is_current"

    @model_validator(mode="after")
    def _keys_for_merges(self):
        if self.mode in ("upsert", "scd2") and not (self.keys and self.sequence_by):
            raise ValueError(f"mode {self.mode} needs keys and sequence_by")
        return self


class GoldConfig(_Strict):
    name: str = ""
    source: list[str] = Field(alias="from")
    sql: str
    partitioned: bool = True


class LakeConfig(_Strict):
    landing: str
    warehouse: str
    engine: EngineConfig = EngineConfig()
    sources: dict[str, SourceConfig]
    silver: dict[str, SilverConfig] = {}
    gold: dict[str, GoldConfig] = {}
    file: str = ""

    @model_validator(mode="after")
    def _names_and_references(self):
        for section in ("sources", "silver", "gold"):
            for name in getattr(self, section):
                if not NAME.match(name):
                    raise ValueError(f"{section}.{name}: names are lower-case letters, digits and _")
        for name, silver in self.silver.items():
            if silver.source not in self.sources:
                raise ValueError(f"silver.{name}.from: unknown source {silver.source!r} "
                                 f"(sources: {', '.join(self.sources)})")
        for name, gold in self.gold.items():
            for ref in gold.source:
                if ref not in self.silver:
                    raise ValueError(f"gold.{name}.from: unknown silver table {ref!r}")
        return self

    def source(self, name: str) -> SourceConfig:
        if name not in self.sources:
            raise ConfigError(f"unknown source {name!r}; sources in {self.file}: {', '.join(self.sources)}")
        return self.sources[name]


def _with_names(raw: dict) -> dict:
    for section in ("sources", "silver", "gold"):
        entries = raw.get(section)
        if isinstance(entries, dict):
            for name, entry in entries.items():
                if isinstance(entry, dict):
                    entry.setdefault("name", name)
    return raw


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {err['msg']} (got {err.get('input')!r})"


def parse_config(text: str, file: str = "<string>") -> LakeConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping with landing, warehouse and sources")
    try:
        config = LakeConfig.model_validate({**_with_names(raw), "file": file})
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{file}: invalid lake config:\n  {problems}") from None
    # Local paths are relative to the config file, so a checked-in config works from any cwd.
    base = Path(file).parent if file != "<string>" else Path.cwd()
    return config.model_copy(update={k: _absolute(getattr(config, k), base) for k in ("landing", "warehouse")})


def _absolute(uri: str, base: Path) -> str:
    if "://" in uri:
        return uri.rstrip("/")
    return str((base / uri).resolve())


def load_config(path: str | os.PathLike | None = None) -> LakeConfig:
    """The config at `path`, else $LAKE_CONFIG, else the bundled demo config."""
    path = Path(path or os.environ.get("LAKE_CONFIG") or DEMO_CONFIG)
    return _load_cached(str(path.resolve()))


@lru_cache(maxsize=8)
def _load_cached(path: str) -> LakeConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read lake config {path}: {exc.strerror} (set LAKE_CONFIG to a YAML file)") from None
    return parse_config(text, path)
