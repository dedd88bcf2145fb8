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


class ConfigError(LakeError, ValueError):
    """The lake config is wrong; the message names the file, the key and what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DatabricksConfig(_Strict):
    """Where `engine: databricks` runs a step: a job on an existing cluster, a new job cluster, or
    serverless (neither), with the lake_assets wheel installed; Pipes talks through `volume`."""
    wheel: str                              # the lake_assets wheel, e.g. on a Volume
    volume: str                             # a Unity Catalog Volume directory for Pipes files
    existing_cluster_id: str | None = None
    new_cluster: dict | None = None         # a Jobs API new_cluster spec
    environment_version: str = "2"          # serverless only
    catalog: str | None = None              # Unity Catalog names: tables registered as external
    schema_name: str | None = Field(None, alias="schema")
    poll_interval_seconds: float = Field(5, gt=0)

    @model_validator(mode="after")
    def _one_compute(self):
        if self.existing_cluster_id and self.new_cluster:
            raise ValueError("give existing_cluster_id or new_cluster, not both (neither: serverless)")
        if bool(self.catalog) != bool(self.schema_name):
            raise ValueError("give both catalog and schema, or neither")
        return self


class EngineConfig(_Strict):
    # active: the Spark session of the process (a Databricks job's); databricks: each step is a
    # Databricks job (through Dagster Pipes) that runs it with `active`.
    kind: Literal["embedded", "spark_connect", "active", "databricks"] = "embedded"
    remote: str | None = None          # sc://host:port for spark_connect
    databricks: DatabricksConfig | None = None

    @model_validator(mode="after")
    def _remote_needed(self):
        if self.kind == "spark_connect" and not (self.remote or "").startswith("sc://"):
            raise ValueError("kind spark_connect needs remote: sc://host:port")
        if (self.kind == "databricks") != (self.databricks is not None):
            raise ValueError("kind databricks needs databricks: {wheel, volume, ...} (and only it takes one)")
        return self


Rate = Field(None, ge=0, le=1)


class ChecksConfig(_Strict):
    """Per-day thresholds of the bronze checks. Rates are shares of the day's rows (0.1 = 10 %);
    None switches a rule off. A source without `baseline_min_days` earlier days is judged by its
    type conflicts and name collisions only; after that, also by the jump over its baseline."""
    rescued_rate_warn: float | None = Rate          # all rescued rows, regardless of class
    rescued_rate_error: float | None = Rate
    type_conflict_rate_warn: float | None = Field(0.01, ge=0, le=1)   # a value that does not fit its column
    type_conflict_rate_error: float | None = Field(0.10, ge=0, le=1)
    unknown_field_rate_warn: float | None = Rate     # a field the schema does not have (rescue / none modes)
    unknown_field_rate_error: float | None = Rate
    name_collision_rate_warn: float | None = Field(0.0, ge=0, le=1)  # case twins, bad characters, audit names
    name_collision_rate_error: float | None = Rate
    rescued_jump_warn_points: float | None = Field(5.0, ge=0, le=100)   # rise over the baseline, in % points
    rescued_jump_error_points: float | None = Field(20.0, ge=0, le=100)
    baseline_days: int = Field(7, ge=1)              # baseline: median rescued share of this many earlier days
    baseline_min_days: int = Field(3, ge=1)          # fewer earlier days: no baseline yet
    malformed_rate_warn: float | None = Field(0.001, ge=0, le=1)
    malformed_rate_error: float | None = Field(0.05, ge=0, le=1)
    unreadable_files: Literal["error", "warn"] = "error"   # severity when a file of the day could not be read


class SourceConfig(_Strict):
    name: str = ""
    path: str
    format: Literal["json", "dynamodb"] = "json"    # dynamodb: DynamoDB JSON, unmarshalled
    # Framings (see core/framing.py): one document or array per file; records under an envelope array.
    multiline: bool = False
    records_path: str | None = None                 # e.g. Records (dotted for deeper: detail.items)
    # Which objects are data (globs on the key relative to path; defaults skip known non-data files).
    include: list[str] = []
    exclude: list[str] = []
    skip_default_excludes: bool = False
    partition_columns: list[str] = []               # Hive-style k=v folders as typed columns
    # After commit (Auto Loader cleanSource): move committed files under archive_to, or delete them.
    clean_source: Literal["off", "move", "delete"] = "off"
    archive_to: str | None = None                   # a URI, an absolute folder, or a prefix under landing
    clean_source_retention_hours: float = Field(720, ge=0)  # Auto Loader's default: 30 days
    start_date: dt.date
    schema_evolution_mode: Literal["addNewColumns", "rescue", "failOnNewColumns", "none"] = "addNewColumns"
    schema_hints: str = ""
    rescued_data_column: str = "_rescued_data"
    on_overwrite: Literal["reprocess", "ignore", "fail"] = "reprocess"
    # A corrupt file (a damaged gzip), as Auto Loader's ignoreCorruptFiles: fail it (the run exits 1,
    # reruns retry it), skip it (ledger `skipped`, run green), or salvage what it holds before the damage.
    on_corrupt: Literal["fail", "skip", "salvage"] = "fail"
    max_files_per_run: int = Field(1000, gt=0)
    max_bytes_per_run: int = Field(10 * 1024**3, gt=0)
    max_bytes_per_batch: int = Field(256 * 1024**2, gt=0)   # memory bound: each batch commits on its own
    claim_timeout_minutes: int = Field(120, gt=0)
    # File discovery for the sensor (Auto Loader: useNotifications, queueUrl, backfillInterval).
    use_notifications: bool = False
    queue_url: str | None = None
    backfill_interval_hours: float = Field(24, gt=0)
    lookback_days: int = Field(2, ge=1)
    checks: ChecksConfig = ChecksConfig()
    owners: list[str] = []          # Dagster asset owners (emails or team:name), shown in the UI
    tags: dict[str, str] = {}       # Dagster asset tags

    @field_validator("schema_hints")
    @classmethod
    def _hints_parse(cls, value: str) -> str:
        try:
            parse_hints(value)
        except SchemaError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("partition_columns")
    @classmethod
    def _partition_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name) or name.startswith("_"):
                raise ValueError(f"{name!r}: a partition column is a plain name (letters, digits, _; "
                                 f"not starting with _, which audit columns use)")
        return value

    @field_validator("rescued_data_column")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError("must be a plain column name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _archive_for_move(self):
        if self.clean_source == "move" and not self.archive_to:
            raise ValueError("clean_source move needs archive_to (where committed files go)")
        relative = self.archive_to and "://" not in self.archive_to and not self.archive_to.startswith("/")
        if relative and (self.archive_to.strip("/") + "/").startswith(self.path.split("*")[0].strip("/") + "/"):
            raise ValueError(f"archive_to {self.archive_to!r} is inside path {self.path!r}: archived files "
                             f"would be listed as new data")
        return self

    @model_validator(mode="after")
    def _queue_for_notifications(self):
        if self.use_notifications and not self.queue_url:
            raise ValueError("use_notifications needs queue_url (the SQS queue receiving the S3 events)")
        return self

    @property
    def hints(self):
        return parse_hints(self.schema_hints)

    @property
    def framing(self):
        from lake_assets.core.framing import Framing

        return Framing(self.multiline, tuple(self.records_path.split(".")) if self.records_path else (),
                       self.format == "dynamodb")


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
    automation: bool = True   # materialize new bronze days by Dagster declarative automation (False: by hand)
    owners: list[str] = []
    tags: dict[str, str] = {}

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
    automation: bool = True   # follow its silver tables by declarative automation (False: by hand)
    owners: list[str] = []
    tags: dict[str, str] = {}


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
        problems = _name_and_reference_problems(self.sources, {n: [s.source] for n, s in self.silver.items()},
                                                {n: g.source for n, g in self.gold.items()})
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def source(self, name: str) -> SourceConfig:
        if name not in self.sources:
            raise ConfigError(f"unknown source {name!r}; sources in {self.file}: {', '.join(self.sources)}")
        return self.sources[name]


def _name_and_reference_problems(sources, silver: dict[str, list], gold: dict[str, list]) -> list[str]:
    """Names that are not lower_snake_case, silver tables reading unknown sources, gold tables
    reading unknown silver tables."""
    problems = [f"{section}.{name}: names are lower-case letters, digits and _"
                for section, names in (("sources", sources), ("silver", silver), ("gold", gold))
                for name in names if not NAME.match(str(name))]
    problems += [f"silver.{name}.from: unknown source {ref!r} (sources: {', '.join(map(str, sources))})"
                 for name, refs in silver.items() for ref in refs if ref not in sources]
    problems += [f"gold.{name}.from: unknown silver table {ref!r}"
                 for name, refs in gold.items() for ref in refs if ref not in silver]
    return problems


def _raw_reference_problems(raw: dict) -> list[str]:
    """The same checks on the raw YAML, so they are reported along with other problems (the model
    checks references only once every field is valid)."""
    def section(name: str) -> dict:
        value = raw.get(name)
        return value if isinstance(value, dict) else {}

    def refs(entry, many: bool) -> list:
        ref = entry.get("from") if isinstance(entry, dict) else None
        return [r for r in (ref if many and isinstance(ref, list) else [ref]) if isinstance(r, str)]

    return _name_and_reference_problems(section("sources"),
                                        {n: refs(e, False) for n, e in section("silver").items()},
                                        {n: refs(e, True) for n, e in section("gold").items()})


def _with_names(raw: dict) -> dict:
    for section in ("sources", "silver", "gold"):
        entries = raw.get(section)
        if isinstance(entries, dict):
            for name, entry in entries.items():
                if isinstance(entry, dict):
                    entry.setdefault("name", name)
    return raw


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML whose dates stay text: the config model parses them, so an impossible date
    (2026-11-31) is a config error naming its key, not a YAML library traceback."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _describe(err: dict) -> list[str]:
    """One line per problem, each `key: what is wrong`."""
    where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    prefix = f"{where}: " if where else ""
    if err["type"] == "extra_forbidden":
        return [f"{where}: unknown key"]
    if err["type"] == "missing":
        return [f"{where}: required key is missing"]
    if err["type"].startswith(("date_", "datetime_")):
        return [f"{where}: {err.get('input')} is not a valid date (YYYY-MM-DD)"]
    if err["type"] == "literal_error":
        return [f"{where}: {err.get('input')!r} is not one of {err['ctx']['expected']}"]
    if err["type"] == "value_error":  # our validators: the message already names keys where it can
        return [prefix + part for part in str(err["ctx"]["error"]).split("; ")]
    return [f"{where}: {err['msg']} (got {err.get('input')!r})"]


def parse_config(text: str, file: str = "<string>") -> LakeConfig:
    try:
        raw = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping with landing, warehouse and sources")
    try:
        config = LakeConfig.model_validate({**_with_names(raw), "file": file})
    except ValidationError as exc:
        problems = [line for e in exc.errors() if e["loc"] for line in _describe(e)] + _raw_reference_problems(raw)
        raise ConfigError("\n".join(f"{file}: {line}" for line in problems)) from None
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
