"""What `lake demo` prints: per run, each materialization and check in one readable line; at the
end, the tables written (counted by delta-rs, a second reader), a sample rescued row and the
commands to try next."""

from __future__ import annotations

import json
import shlex
from collections import Counter

from lake_assets.config import LakeConfig
from lake_assets.core.fieldpath import FieldPath
from lake_assets.core.layout import LINE, RESCUED_FILE_PATH, SOURCE_FILE, Layout, table_uri

# Materialization facts worth a word, in this order: (metadata key, how to say it).
FACTS = (("files", "{} files"), ("rows", "{} rows"), ("rows_written", "{} rows written"),
         ("malformed", "{} malformed"), ("rescued_rows", "{} rescued"), ("quarantined", "{} quarantined"),
         ("schema_version", "schema v{}"), ("delta_version", "delta v{}"))
WIDTH = 26


def _pct(value: float) -> str:
    return f"{value:.2%}".replace("%", " %")


def _describe_check(meta: dict) -> str:
    """The figures of a check from its metadata: rates as percentages, thresholds, drifted fields,
    the most frequent rescued paths."""
    parts = []
    for key, value in meta.items():
        if key.endswith("_rate") and isinstance(value, float):
            parts.append(f"{key.removesuffix('_rate')} {_pct(value)}")
        elif key.endswith("_pct") and isinstance(value, (int, float)):
            parts.append(f"{key.removesuffix('_pct').replace('_', ' ')} {value:.2f} %")
        elif key in ("added", "removed", "retyped") and value:
            parts.append(f"{key}: {', '.join(value)}")
        elif key.endswith("paths") and isinstance(value, dict) and value:
            top = sorted(value.items(), key=lambda kv: -kv[1])[:3]
            parts.append("top rescued paths: " + ", ".join(f"{path} ({n})" for path, n in top))
    if isinstance(meta.get("warn_over"), float) and isinstance(meta.get("error_over"), float):
        parts.append(f"WARN over {_pct(meta['warn_over'])}, ERROR over {_pct(meta['error_over'])}")
    return "; ".join(parts)


def print_run(events) -> None:
    mats = [e.materialization for e in events if e.event_type_value == "ASSET_MATERIALIZATION"]
    checks = [e.event_specific_data for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    for mat in mats:
        meta = {k: v.value for k, v in mat.metadata.items()}
        facts = [text.format(meta[key]) for key, text in FACTS if isinstance(meta.get(key), int)]
        print(f"  {mat.asset_key.to_user_string():<{WIDTH}} {', '.join(facts)}")
    names = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks]
    width = max(map(len, names), default=0)
    for name, check in zip(names, checks):
        verdict = "passed" if check.passed else check.severity.value
        said = getattr(check, "description", None) or _describe_check({k: v.value for k, v in check.metadata.items()})
        print(f"  check {name:<{width}}  {verdict:<6} {said}".rstrip())


def _query(uri: str, sql: str) -> list[dict] | None:
    """Rows of `sql` over the Delta table at `uri` (as `t`), read by delta-rs; None if no table.
    (QueryBuilder, not to_pyarrow_*: those make the process abort at exit, see ENGINE.md.)"""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    if not DeltaTable.is_deltatable(uri):
        return None
    return pa.table(QueryBuilder().register("t", DeltaTable(uri)).execute(sql).read_all()).to_pylist()


def _delta_rows(uri: str) -> int | None:
    rows = _query(uri, "SELECT count(*) AS n FROM t")
    return None if rows is None else rows[0]["n"]


def _rescued_rows(lake: LakeConfig, source: str) -> list[dict]:
    column = lake.sources[source].rescued_data_column
    rows = _query(Layout(lake.warehouse, source).bronze, f"SELECT {column}, {SOURCE_FILE}, {LINE} FROM t "
                                                         f"WHERE {column} IS NOT NULL ORDER BY {SOURCE_FILE}, {LINE}")
    return [{**row, "rescued": json.loads(row[column])} for row in rows or []]


def promotable(lake: LakeConfig, source: str, rows: list[dict]) -> str | None:
    """The rescued field most often seen that `lake promote` can make a column: not inside an
    array, not already a column."""
    from deltalake import DeltaTable

    columns = set(DeltaTable(Layout(lake.warehouse, source).bronze).schema().to_arrow().names)
    paths = Counter(FieldPath.parse(key) for row in rows for key in row["rescued"] if key != RESCUED_FILE_PATH)
    counts = Counter({p.format(): n for p, n in paths.items() if not p.in_array and p.steps[0] not in columns})
    return counts.most_common(1)[0][0] if counts else None


def print_summary(lake: LakeConfig, blocked: list[str], lake_cmd: str, env_line: str) -> None:
    print("\nDelta tables written (rows as delta-rs reads them):")
    for layer, names in (("bronze", [n for s in lake.sources for n in (s, f"{s}__quarantine")]),
                         ("silver", list(lake.silver)), ("gold", list(lake.gold))):
        for name in names:
            uri = table_uri(lake.warehouse, layer, name)
            rows = _delta_rows(uri)
            if rows is not None:
                print(f"  {layer + '/' + name:<{WIDTH + 8}} {rows:>6} rows  {uri}")
    print(f"ingestion state (ledger, schema log): {lake.warehouse}/_state/")
    if blocked:
        print(f"\nBlocked: {', '.join(blocked)}. Bronze kept every row, but an ERROR check (above) stopped silver "
              f"and gold for that day (write-audit-publish): raise the threshold in the source's checks or fix the "
              f"producer, then rerun the day.")
    rescue = [name for name, s in lake.sources.items() if s.schema_evolution_mode == "rescue"]
    source = rescue[0] if rescue else next(iter(lake.sources))
    rows = _rescued_rows(lake, source)
    field = promotable(lake, source, rows) if rows else None
    if rows:
        sample = rows[0]
        print(f"\nA rescued row of bronze/{source} ({sample[SOURCE_FILE].rsplit('/', 1)[-1]}, "
              f"line {sample[LINE]}):\n  {json.dumps(sample['rescued'])}")
    print(f"\nThe lake stays in {lake.file.rsplit('/', 1)[0]}. Try, in this folder:\n  {env_line}")
    steps = [("status", "files, rows, rescued share per source"),
             ("schema history telemetry", "every schema version and what changed")]
    if field:
        steps.append((f"promote {source} {shlex.quote(field)}",   # (a quoted name's backticks, for the shell)
                      f"make the rescued {field} a column, moving its values"))
    steps.append(("dev", "the Dagster UI on this lake: runs, checks, materializations"))
    width = max(len(f"{lake_cmd} {args}") for args, _ in steps)
    for args, what in steps:
        print(f"  {lake_cmd + ' ' + args:<{width}}  # {what}")
