"""Data-quality audit of a source, per landing day: what the day holds (from the ledger), its
rescued rows by class, malformed lines, unreadable files and schema drift, each judged PASS /
WARN / ERROR with a one-line description. Plain values; Dagster turns them into check results."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.config import ChecksConfig, LakeConfig, SourceConfig
from lake_assets.core import tables
from lake_assets.core.fieldpath import FOLD_PATTERN, FOLD_REPLACEMENT, FieldPath
from lake_assets.core.layout import AUDIT_COLUMNS, BRONZE_PARTITION, LINE, RESCUED_FILE_PATH, SOURCE_FILE, Layout
from lake_assets.core.ledger import COMMITTED, FAILED, Entry, Ledger
from lake_assets.core.schema import INVALID_NAME_CHARS, SchemaDiff, diff
from lake_assets.core.schema_log import SchemaLog, SchemaVersion

PASS, WARN, ERROR = "PASS", "WARN", "ERROR"
CHECKS = ("rescued_data_rate", "malformed_rate", "unreadable_files", "schema_drift")
CLASSES = ("type_conflict", "unknown_field", "name_collision")
_CLASS_WORDS = {"type_conflict": "type conflicts", "unknown_field": "unknown fields",
                "name_collision": "name collisions"}


def pct(share: float) -> str:
    return f"{share * 100:.3g} %"


@dataclass(frozen=True)
class DayFacts:
    """What bronze holds for one landing day (committed files), and what this run added."""
    day: str
    files: int = 0
    rows: int = 0
    bytes: int = 0
    malformed: int = 0
    rescued: int = 0
    new_files: int = 0
    new_rows: int = 0
    failed: dict[str, str] = field(default_factory=dict)   # uri -> why it could not be read
    committed_at: dt.datetime | None = None                 # the day's latest commit


def day_facts(entries: dict[str, Entry], days: list[str], batch_ids: list[str]) -> dict[str, DayFacts]:
    by_day: dict[str, list[Entry]] = {d: [] for d in days}
    for e in entries.values():
        if e.landing_date in by_day:
            by_day[e.landing_date].append(e)
    out = {}
    for day, found in by_day.items():
        done = [e for e in found if e.status == COMMITTED]
        new = [e for e in done if e.batch_id in batch_ids]
        out[day] = DayFacts(
            day, len(done), sum(e.records or 0 for e in done), sum(e.size or 0 for e in done),
            sum(e.malformed or 0 for e in done), sum(e.rescued or 0 for e in done),
            len(new), sum(e.records or 0 for e in new),
            {e.uri: e.error or "failed" for e in found if e.status == FAILED},
            max((e.committed_at for e in done if e.committed_at), default=None))
    return out


def baseline(entries: dict[str, Entry], day: str, checks: ChecksConfig) -> float | None:
    """Median rescued share of the last `baseline_days` earlier days with rows; None until there
    are `baseline_min_days` of them."""
    totals: dict[str, list[int]] = {}
    for e in entries.values():
        if e.status == COMMITTED and e.landing_date < day and e.records:
            t = totals.setdefault(e.landing_date, [0, 0])
            t[0] += e.records
            t[1] += e.rescued or 0
    shares = [r / n for _, (n, r) in sorted(totals.items())][-checks.baseline_days:]
    return statistics.median(shares) if len(shares) >= checks.baseline_min_days else None


# -- rescued rows by class


@dataclass(frozen=True)
class ClassCount:
    rows: int = 0
    paths: list[tuple[str, int]] = field(default_factory=list)   # most frequent first (array indexes folded)


@dataclass(frozen=True)
class Rescued:
    rows: int = 0
    rescued_rows: int = 0
    classes: dict[str, ClassCount] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rescued_rows / self.rows if self.rows else 0.0

    def class_rate(self, name: str) -> float:
        return self.classes.get(name, ClassCount()).rows / self.rows if self.rows else 0.0


def classify(path: str, schema: T.StructType, rescued_column: str) -> str:
    """Why a rescued path was rescued: its column exists (type_conflict), a name that can never be
    a column (name_collision: case twin, bad characters, audit name) or a field the schema lacks."""
    try:
        steps = FieldPath.parse(path).steps
    except ValueError:  # not a path our rescue writes
        return "unknown_field"
    t: T.DataType = schema
    for i, step in enumerate(steps):
        if not isinstance(step, str):  # an array position
            if not isinstance(t, T.ArrayType):
                return "type_conflict"
            t = t.elementType
            continue
        if isinstance(t, T.MapType):
            return "type_conflict"
        fields = {f.name: f.dataType for f in t.fields} if isinstance(t, T.StructType) else {}
        if step not in fields:
            reserved = i == 0 and step in (*AUDIT_COLUMNS, rescued_column, RESCUED_FILE_PATH)
            if step.lower() in {n.lower() for n in fields} or INVALID_NAME_CHARS.search(step) or reserved:
                return "name_collision"
            return "unknown_field" if isinstance(t, T.StructType) else "type_conflict"
        t = fields[step]
    return "type_conflict"


def rescued_by_day(spark, layout: Layout, rescued_column: str, days: list[str], top: int = 10) -> dict[str, Rescued]:
    """Per day: rows, rows with rescued data, and per class the rows and most frequent paths."""
    schema = tables.schema_or_none(spark, layout.bronze)
    if schema is None or not days:
        return {d: Rescued() for d in days}
    df = tables.read(spark, layout.bronze).where(F.col(BRONZE_PARTITION).isin(days))
    totals = {r[0]: (r[1], r[2]) for r in df.groupBy(BRONZE_PARTITION).agg(
        F.count("*"), F.count(rescued_column)).collect()}
    keys = F.map_keys(F.from_json(rescued_column, T.MapType(T.StringType(), T.StringType())))
    paths = (df.where(F.col(rescued_column).isNotNull())
             .select(BRONZE_PARTITION, SOURCE_FILE, LINE, F.explode(keys).alias("raw"))
             .where(F.col("raw") != RESCUED_FILE_PATH)
             .select(BRONZE_PARTITION, SOURCE_FILE, LINE,
                     F.regexp_replace("raw", FOLD_PATTERN, FOLD_REPLACEMENT).alias("path")).distinct())
    counted = paths.groupBy(BRONZE_PARTITION, "path").count().collect()
    data = T.StructType([f for f in schema.fields if f.name not in (*AUDIT_COLUMNS, rescued_column)])
    kind = {r["path"]: classify(r["path"], data, rescued_column) for r in counted}
    per_class_rows: dict[tuple[str, str], int] = {}
    if kind:
        kinds = spark.createDataFrame(list(kind.items()), "path string, kind string")
        for r in (paths.join(F.broadcast(kinds), "path").select(BRONZE_PARTITION, SOURCE_FILE, LINE, "kind")
                  .distinct().groupBy(BRONZE_PARTITION, "kind").count().collect()):
            per_class_rows[(r[0], r["kind"])] = r["count"]
    out = {}
    for day in days:
        rows, hits = totals.get(day, (0, 0))
        classes = {}
        for name in CLASSES:
            found = sorted(((r["path"], r["count"]) for r in counted if r[0] == day and kind[r["path"]] == name),
                           key=lambda kv: (-kv[1], kv[0]))
            if found:
                classes[name] = ClassCount(per_class_rows.get((day, name), 0), found[:top])
        out[day] = Rescued(rows, hits, classes)
    return out


# -- schema drift per day


@dataclass(frozen=True)
class Drift:
    accepted_version: int | None
    current_version: int | None
    diff: SchemaDiff

    @property
    def breaking(self) -> bool:
        return bool(self.diff.removed or self.diff.retyped)


def _drift(versions: list[SchemaVersion], accepted: SchemaVersion | None, current: SchemaVersion | None,
           latest: T.StructType | None = None) -> Drift:
    if current is None:
        return Drift(None, None, SchemaDiff())
    base = accepted or versions[0]
    found = diff(base.schema, latest or current.schema)
    if latest is None and current.version < base.version:   # a day older than the acceptance lacks, not lost, fields
        found = SchemaDiff(found.added, [], found.retyped)
    return Drift(base.version, current.version, found)


def schema_drift(layout: Layout) -> Drift:
    """The source's latest schema (or the pending one `failOnNewColumns` refused) against the
    accepted one (`lake schema accept`; else the first version)."""
    log = SchemaLog(layout.schemas)
    versions = log.versions()
    pending = log.pending()
    current = versions[-1] if versions else None
    return _drift(versions, log.accepted(), current, pending.schema if pending and current else None)


def drift_by_day(layout: Layout, facts: dict[str, DayFacts]) -> dict[str, Drift]:
    """Each day's schema — the version its latest files were written with — against the accepted
    schema; a later day's new fields never count against an earlier day."""
    log = SchemaLog(layout.schemas)
    versions, accepted = log.versions(), log.accepted()
    out = {}
    for day, f in facts.items():
        at = f.committed_at.isoformat(timespec="seconds") if f.committed_at else None
        # created_at is written before the day's files commit, so the day's version is the last one before it
        used = [v for v in versions if at is not None and v.created_at <= at] or versions[:1]
        out[day] = _drift(versions, accepted, used[-1] if f.files and used else None)
    return out


# -- verdicts


@dataclass(frozen=True)
class Verdict:
    check: str
    level: str          # PASS | WARN | ERROR
    description: str
    metadata: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.level == PASS


def _grade(value: float, warn: float | None, error: float | None) -> str:
    if error is not None and value > error:
        return ERROR
    if warn is not None and value > warn:
        return WARN
    return PASS


def _worst(levels) -> str:
    levels = set(levels)
    return ERROR if ERROR in levels else WARN if WARN in levels else PASS


def judge_rescued(r: Rescued, base: float | None, c: ChecksConfig) -> Verdict:
    if not r.rows:
        return Verdict("rescued_data_rate", PASS, "no rows this day", {"rows": 0})
    rules = [("type_conflict", c.type_conflict_rate_warn, c.type_conflict_rate_error),
             ("name_collision", c.name_collision_rate_warn, c.name_collision_rate_error)]
    if base is not None:   # a new source is judged by its conflicts only, until it has a baseline
        rules.append(("unknown_field", c.unknown_field_rate_warn, c.unknown_field_rate_error))
    found = []   # (level, why)
    for name, warn, error in rules:
        share = r.class_rate(name)
        level = _grade(share, warn, error)
        if level != PASS:
            found.append((level, f"{_CLASS_WORDS[name]} {pct(share)} > {pct(error if level == ERROR else warn)}"))
    if base is not None:
        level = _grade(r.rate, c.rescued_rate_warn, c.rescued_rate_error)
        if level != PASS:
            found.append((level, f"> {pct(c.rescued_rate_error if level == ERROR else c.rescued_rate_warn)}"))
        rise = (r.rate - base) * 100
        level = _grade(rise, c.rescued_jump_warn_points, c.rescued_jump_error_points)
        if level != PASS:
            found.append((level, f"up {rise:.3g} points from the baseline {pct(base)}"))
    level = _worst(lv for lv, _ in found)
    why = [w for lv, w in found if lv == level]
    line = f"{pct(r.rate)} rows rescued" + (f" ({'; '.join(why)})" if why else "")
    for name in CLASSES:
        if name in r.classes:
            shown = ", ".join(f"{p} {n}" for p, n in r.classes[name].paths[:3])
            line += f", {_CLASS_WORDS[name]}: {shown}"
    if base is None:
        line += " (no baseline yet: judged by conflicts only)"
    metadata = {"rows": r.rows, "rescued_rows": r.rescued_rows, "rescued_pct": round(r.rate * 100, 3),
                "baseline_pct": round(base * 100, 3) if base is not None else None}
    for name in CLASSES:
        got = r.classes.get(name, ClassCount())
        metadata[f"{name}_rows"] = got.rows
        metadata[f"{name}_pct"] = round(r.class_rate(name) * 100, 3)
        metadata[f"{name}_paths"] = dict(got.paths)
    return Verdict("rescued_data_rate", level, line, metadata)


def judge_malformed(f: DayFacts, c: ChecksConfig) -> Verdict:
    lines = f.rows + f.malformed
    share = f.malformed / lines if lines else 0.0
    level = _grade(share, c.malformed_rate_warn, c.malformed_rate_error)
    limit = c.malformed_rate_error if level == ERROR else c.malformed_rate_warn
    line = f"{pct(share)} lines malformed ({f.malformed} of {lines})" + (f" (> {pct(limit)})" if level != PASS else "")
    return Verdict("malformed_rate", level, line,
                   {"lines": lines, "malformed": f.malformed, "malformed_pct": round(share * 100, 3)})


def judge_unreadable(f: DayFacts, c: ChecksConfig) -> Verdict:
    if not f.failed:
        return Verdict("unreadable_files", PASS, f"all {f.files} file(s) read", {"unreadable": 0})
    first, reason = next(iter(sorted(f.failed.items())))
    line = f"{len(f.failed)} file(s) unreadable: {first}: {reason.splitlines()[0][:200]}"
    return Verdict("unreadable_files", ERROR if c.unreadable_files == "error" else WARN, line,
                   {"unreadable": len(f.failed), "files": dict(sorted(f.failed.items())[:50])})


def judge_drift(d: Drift) -> Verdict:
    changes = {k: v for k, v in d.diff.as_dict().items() if v}
    level = PASS if d.diff.empty else ERROR if d.breaking else WARN
    line = ("schema as accepted" if level == PASS else
            "; ".join(f"{k}: {', '.join(v[:5])}" + (f" (+{len(v) - 5})" if len(v) > 5 else "") for k, v in changes.items())
            + f" (version {d.current_version} against accepted {d.accepted_version}; `lake schema accept` or the "
              f"accept_schema job accepts it)")
    return Verdict("schema_drift", level, line, {
        "accepted_version": d.accepted_version, "day_version": d.current_version,
        "added": d.diff.added, "removed": d.diff.removed, "retyped": d.diff.retyped})


@dataclass(frozen=True)
class DayAudit:
    facts: DayFacts
    verdicts: list[Verdict]
    schema_version: int | None

    @property
    def blocked_by(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.level == ERROR]


def audit_entries(spark, ledger_uri: str, days: list[str], checks: ChecksConfig) -> dict[str, Entry]:
    """The ledger rows audit reads: every day from `baseline_days` days before its first day to its
    last (baseline() takes the last `baseline_days` earlier days with rows); only when that window
    has fewer such days (gaps, a young lake) does the engine find the days with rows before it."""
    if not days:
        return {}
    first, last = dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))
    start = first - dt.timedelta(days=checks.baseline_days)
    window = {(start + dt.timedelta(days=i)).isoformat() for i in range((last - start).days + 1)}
    entries = Ledger(spark, ledger_uri, window).entries()
    earlier_with_rows = {e.landing_date for e in entries.values()
                         if e.status == COMMITTED and e.records and e.landing_date < min(days)}
    if len(earlier_with_rows) >= checks.baseline_days or tables.schema_or_none(spark, ledger_uri) is None:
        return entries
    earlier = {r["landing_date"] for r in tables.read(spark, ledger_uri)
               .where((F.col("landing_date") < min(days)) & (F.col("status") == COMMITTED) & (F.col("records") > 0))
               .groupBy("landing_date").count().orderBy(F.col("landing_date").desc())
               .limit(checks.baseline_days).collect()}
    return entries if earlier <= window else Ledger(spark, ledger_uri, window | earlier).entries()


def audit(spark, lake: LakeConfig, source: SourceConfig, days: list[str], batch_ids: list[str]) -> dict[str, DayAudit]:
    """Every check of every day, from the ledger, the bronze table and the schema log."""
    layout = Layout(lake.warehouse, source.name)
    entries = audit_entries(spark, layout.ledger, days, source.checks)
    facts = day_facts(entries, days, batch_ids)
    rescued = rescued_by_day(spark, layout, source.rescued_data_column, days)
    drifts = drift_by_day(layout, facts)
    c = source.checks
    return {day: DayAudit(facts[day], [judge_rescued(rescued[day], baseline(entries, day, c), c),
                                       judge_malformed(facts[day], c), judge_unreadable(facts[day], c),
                                       judge_drift(drifts[day])], drifts[day].current_version)
            for day in days}
