"""`lake`: the operator's command line, a thin layer over lake_assets.core."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from lake_assets.config import ConfigError, load_config


def _spark(lake):
    from lake_assets.engine import spark_session

    return spark_session(lake.engine)


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _days(args) -> list[str]:
    from lake_assets.core.operations import day_range, parse_day

    if args.date:
        return [parse_day(args.date).isoformat()]
    if args.start or args.end:
        if not (args.start and args.end):
            from lake_assets.core.operations import OperatorError
            raise OperatorError("give both --from and --to (or --date)")
        return day_range(args.start, args.end)
    return [dt.datetime.now(dt.timezone.utc).date().isoformat()]


def cmd_ingest(args, lake) -> int:
    from lake_assets.core.bronze import ingest

    source = lake.source(args.source)
    days = _days(args)
    result = ingest(_spark(lake), lake, source, days, reprocess=args.reprocess,
                    log=lambda m: print(m, file=sys.stderr), progress=_progress_bar(f"ingest {source.name}"))
    print(json.dumps({"source": source.name, "days": len(days), "files": result.files, "records": result.records,
                      "malformed": result.malformed, "rescued": result.rescued, "failed": result.failed,
                      "table_version": result.table_version, "schema_version": result.schema_version}))
    return 1 if result.failed else 0


def cmd_reprocess(args, lake) -> int:
    args.reprocess = True
    return cmd_ingest(args, lake)


def cmd_status(args, lake) -> int:
    from lake_assets.core.operations import source_status

    names = [args.source] if args.source else list(lake.sources)
    for name in names:
        print(json.dumps(source_status(_spark(lake), lake, lake.source(name))))
    return 0


def cmd_validate(args, lake) -> int:
    from lake_assets.core.operations import validate

    total = 0
    for name in [args.source] if args.source else list(lake.sources):
        problems = validate(_spark(lake), lake, lake.source(name))
        total += problems.count
        for line in problems.describe():
            print(f"{name}: {line}")
        print(f"{name}: {'OK' if not problems.count else f'{problems.count} problem(s)'}")
    return 1 if total else 0


def cmd_repair(args, lake) -> int:
    from lake_assets.core.operations import repair, validate

    for name in [args.source] if args.source else list(lake.sources):
        found = repair(_spark(lake), lake, lake.source(name), log=lambda m: print(f"{name}: {m}"))
        left = validate(_spark(lake), lake, lake.source(name))
        print(f"{name}: repaired {found.count} problem(s); {left.count} left")
        if left.count:
            for line in left.describe():
                print(f"{name}: {line}")
            return 1
    return 0


def cmd_reset(args, lake) -> int:
    from lake_assets.core.operations import reset

    reset(_spark(lake), lake, lake.source(args.source), args.confirm)
    return 0


def cmd_schema(args, lake) -> int:
    from lake_assets.core.bronze import Layout
    from lake_assets.core.schema import diff
    from lake_assets.core.schema_log import SchemaLog

    source = lake.source(args.source)
    log = SchemaLog(Layout(lake.warehouse, source.name).schemas)
    versions = log.versions()
    if args.action == "accept":
        version = log.accept()
        print(f"{source.name}: accepted schema version {version.version}: {json.dumps(version.changes)}")
        return 0
    if not versions:
        print(f"{source.name}: no schema yet (nothing ingested)")
        return 0
    if args.action == "show":
        current = versions[-1]
        print(f"{source.name} schema version {current.version} ({current.created_at}):")
        print(current.schema.treeString() if hasattr(current.schema, "treeString") else current.schema.simpleString())
        pending = log.pending()
        if pending:
            print(f"PENDING (failOnNewColumns): {pending.reason}; accept with `lake schema accept {source.name}`")
    elif args.action == "history":
        for v in versions:
            print(json.dumps({"version": v.version, "created_at": v.created_at, "reason": v.reason,
                              "changes": v.changes, "files": v.files[:5]}))
    elif args.action == "diff":
        old = versions[args.old if args.old is not None else max(0, len(versions) - 2)]
        new = versions[args.new if args.new is not None else -1]
        print(json.dumps({"from": old.version, "to": new.version, **diff(old.schema, new.schema).as_dict()}, indent=1))
    return 0


def cmd_promote(args, lake) -> int:
    from lake_assets.core.promote import promote

    done = promote(_spark(lake), lake, lake.source(args.source), args.path, args.type)
    print(json.dumps(done.__dict__))
    return 0


def cmd_demo(args, lake) -> int:
    from lake_assets.demo.run import run_demo

    return run_demo()


def cmd_dev(args, lake) -> int:
    from lake_assets.demo.run import run_dev

    return run_dev(args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lake", description="Operate a lake_assets lake (config: $LAKE_CONFIG "
                                                                "or the bundled demo config).")
    parser.add_argument("--config", help="lake YAML (default: $LAKE_CONFIG, else the demo config)")
    sub = parser.add_subparsers(dest="command", required=True)

    def dated(p):
        p.add_argument("source")
        p.add_argument("--date", help="one landing date (YYYY-MM-DD); default today (UTC)")
        p.add_argument("--from", dest="start", help="first landing date")
        p.add_argument("--to", dest="end", help="last landing date")
        return p

    p = dated(sub.add_parser("ingest", help="ingest new files of some landing dates into bronze"))
    p.add_argument("--reprocess", action="store_true", help="also re-read files already ingested")
    p.set_defaults(func=cmd_ingest)
    dated(sub.add_parser("reprocess", help="re-read every file of a date range and replace its rows")) \
        .set_defaults(func=cmd_reprocess, reprocess=True)
    for name, func, text in (("status", cmd_status, "files by status, last batch, schema version, rescued rate"),
                             ("validate", cmd_validate, "check the ledger against the tables (exit 1 on problems)"),
                             ("repair", cmd_repair, "fix what validate finds (idempotent)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("source", nargs="?")
        p.set_defaults(func=func)
    p = sub.add_parser("reset", help="empty a source's bronze table, ledger and schema log (history kept)")
    p.add_argument("source")
    p.add_argument("--confirm", help="the source name again")
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("schema", help="the schema log: show | history | diff | accept")
    p.add_argument("action", choices=["show", "history", "diff", "accept"])
    p.add_argument("source")
    p.add_argument("--old", type=int, help="diff: from version (default: the one before last)")
    p.add_argument("--new", type=int, help="diff: to version (default: last)")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("promote", help="make a rescued field a column and move its historic values into it")
    p.add_argument("source")
    p.add_argument("path", help="field path, e.g. device.fw.patch")
    p.add_argument("--type", help="column type (Spark DDL, e.g. BIGINT); default: inferred from the rescued values")
    p.set_defaults(func=cmd_promote)
    sub.add_parser("demo", help="run the demo: local S3, demo data, the whole pipeline, a summary") \
        .set_defaults(func=cmd_demo)
    p = sub.add_parser("dev", help="the demo stack plus `dagster dev` (Ctrl-C stops both)")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lake_assets.core.bronze import IngestError
    from lake_assets.core.operations import OperatorError
    from lake_assets.core.promote import PromoteError
    from lake_assets.core.schema import SchemaError
    from lake_assets.engine import EngineError
    from lake_assets.storage import StorageError

    try:
        lake = load_config(args.config)
        return args.func(args, lake)
    except (ConfigError, OperatorError, IngestError, StorageError, EngineError, LookupError, PromoteError,
            SchemaError) as exc:
        print(f"lake {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
