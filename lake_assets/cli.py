"""`lake`: the operator's command line, a thin layer over lake_assets.core."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from lake_assets.config import load_config
from lake_assets.errors import LakeError, outside_error


def _spark(lake):
    from lake_assets.engine import spark_session

    return spark_session(lake.engine)


def _progress(desc: str):
    """A progress line on stderr: rewritten in place on a terminal, else one line at the end."""
    tty = sys.stderr.isatty()

    def update(done: int, total: int) -> None:
        if tty:
            print(f"\r{desc}: {done}/{total} file(s)", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        elif done >= total:
            print(f"{desc}: {total} file(s) done", file=sys.stderr)

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
                    log=lambda m: print(m, file=sys.stderr), progress=_progress(f"ingest {source.name}"),
                    from_archive=getattr(args, "from_archive", False))
    print(json.dumps({"source": source.name, "days": len(days), "files": result.files, "records": result.records,
                      "malformed": result.malformed, "rescued": result.rescued, "failed": result.failed,
                      "skipped_overwritten": result.skipped_overwritten,  # files left as loaded (on_overwrite: ignore)
                      "table_version": result.table_version, "schema_version": result.schema_version}))
    return 1 if result.failed else 0


def cmd_reprocess(args, lake) -> int:
    args.reprocess = True
    return cmd_ingest(args, lake)


STATUS_COLUMNS = (("source", "source"), ("files committed", "committed"), ("pending", "pending"),
                  ("failed", "failed"), ("records", "records"), ("malformed", "malformed"),
                  ("rescued", "rescued"), ("schema", "schema"), ("last commit", "last_commit"),
                  ("not data", "not_data"))


def _status_row(status: dict) -> dict:
    files = status["files"]
    schema = "-" if status["schema_version"] is None else f"v{status['schema_version']}"
    return {"source": status["source"], "committed": files.get("committed", 0),
            "pending": files.get("pending", 0), "failed": files.get("failed", 0),
            "not_data": files.get("skipped_not_data", 0), "records": status["records"],
            "malformed": status["malformed"], "rescued": f"{status['rescued_rate']:.2%}",
            "schema": schema + (" (pending)" if status["schema_pending"] else ""),
            "last_commit": status["last_commit"] or "-"}


def print_table(rows: list[dict], columns: tuple[tuple[str, str], ...]) -> None:
    """Rows as an aligned table: text left-aligned, numbers right-aligned."""
    cells = [[str(row[key]) for _, key in columns] for row in rows]
    widths = [max(len(title), *(len(r[i]) for r in cells)) for i, (title, _) in enumerate(columns)]
    numeric = [all(isinstance(row[key], int) or str(row[key]).endswith("%") for row in rows) for _, key in columns]
    for line in [[title for title, _ in columns], *cells]:
        print("  ".join(text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i])
                        for i, text in enumerate(line)).rstrip())


def cmd_status(args, lake) -> int:
    from lake_assets.core.operations import STATUS_LOOKBACK_DAYS, source_status, status_days

    names = [args.source] if args.source else list(lake.sources)
    days = None if args.all else status_days(args.start, args.end, dt.datetime.now(dt.timezone.utc).date())
    statuses = [source_status(_spark(lake), lake, lake.source(name), days) for name in names]
    if args.json:
        for status in statuses:  # one object per line
            print(json.dumps(status))
    else:
        print("every landing day" if days is None else f"landing days {days[0]}..{days[-1]}"
              + ("" if args.start or args.end else f" (the last {STATUS_LOOKBACK_DAYS}; --from/--to or --all)"),
              file=sys.stderr)
        print_table([_status_row(s) for s in statuses], STATUS_COLUMNS)
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
    from lake_assets.core.operations import rebuild_ledger, repair, validate

    for name in [args.source] if args.source else list(lake.sources):
        if args.rebuild_ledger:
            rebuild_ledger(_spark(lake), lake, lake.source(name), log=lambda m: print(f"{name}: {m}"))
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


def _changes(changes: dict) -> str:
    parts = [f"{kind} {', '.join(paths)}" for kind, paths in changes.items() if paths]
    return "; ".join(parts) or "no field changes"


def cmd_schema(args, lake) -> int:
    from lake_assets.core.layout import Layout
    from lake_assets.core.operations import OperatorError
    from lake_assets.core.schema import diff
    from lake_assets.core.schema_log import SchemaLog

    source = lake.source(args.source)
    log = SchemaLog(Layout(lake.warehouse, source.name).schemas)
    versions = log.versions()
    if args.action == "accept":
        version = log.accept()
        print(f"{source.name}: accepted schema version {version.version}: {_changes(version.changes)}")
        return 0
    if not versions:
        print(f"{source.name}: no schema yet (the warehouse has nothing ingested for it)")
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
            files = f" (first in {v.files[0]}{f' and {len(v.files) - 1} more' if len(v.files) > 1 else ''})" \
                if v.files else ""
            print(f"version {v.version}  {v.created_at}  {v.reason}: {_changes(v.changes)}{files}")
    elif args.action == "diff":
        if len(versions) == 1 and args.old is None and args.new is None:
            print(f"{source.name}: only one schema version ({versions[0].version}), nothing to compare yet")
            return 0
        numbers = [v.version for v in versions]
        old = args.old if args.old is not None else numbers[max(0, len(numbers) - 2)]
        new = args.new if args.new is not None else numbers[-1]
        for n in (old, new):
            if n not in numbers:
                raise OperatorError(f"{source.name} has no schema version {n} (versions: {numbers[0]}..{numbers[-1]})")
        changes = diff(versions[numbers.index(old)].schema, versions[numbers.index(new)].schema).as_dict()
        print(f"{source.name} schema version {old} -> {new}: {_changes(changes)}")
    return 0


def cmd_promote(args, lake) -> int:
    from lake_assets.core.promote import promote

    done = promote(_spark(lake), lake, lake.source(args.source), args.path, args.type)
    print(f"{args.source}: {done.path} is now a {done.type} column (schema version {done.schema_version}); "
          f"{done.rows_moved} row(s) moved out of the rescued data, {done.rows_left} left there (value does not fit)")
    return 0


def cmd_demo(args, lake) -> int:
    from lake_assets.demo.run import run_demo

    return run_demo()


def cmd_dev(args, lake) -> int:
    from lake_assets.demo.run import run_dev

    return run_dev(args.port, s3=args.s3)


def _dated(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("source")
    p.add_argument("--date", help="one landing date (YYYY-MM-DD); default today (UTC)")
    p.add_argument("--from", dest="start", help="first landing date")
    p.add_argument("--to", dest="end", help="last landing date")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lake", description="Operate a lake_assets lake (config: $LAKE_CONFIG "
                                                                "or the bundled demo config).")
    parser.add_argument("--config", help="lake YAML (default: $LAKE_CONFIG, else the demo config)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = _dated(sub.add_parser("ingest", help="ingest new files of some landing dates into bronze"))
    p.add_argument("--reprocess", action="store_true", help="also re-read files already ingested")
    p.set_defaults(func=cmd_ingest)
    p = _dated(sub.add_parser("reprocess", help="re-read every file of a date range and replace its rows"))
    p.add_argument("--from-archive", action="store_true",
                   help="read the files clean_source moved to archive_to, in place")
    p.set_defaults(func=cmd_reprocess, reprocess=True)
    for name, func, text in (("status", cmd_status, "files by status, last batch, schema version, rescued rate"),
                             ("validate", cmd_validate, "check the ledger against the tables (exit 1 on problems)"),
                             ("repair", cmd_repair, "fix what validate finds (idempotent)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("source", nargs="?")
        p.set_defaults(func=func)
        if name == "status":
            p.add_argument("--json", action="store_true", help="print the status as JSON")
            p.add_argument("--from", dest="start", help="first landing date (default: 6 days before --to)")
            p.add_argument("--to", dest="end", help="last landing date (default: today, UTC)")
            p.add_argument("--all", action="store_true", help="every landing day (lists the whole landing)")
        if name == "repair":
            p.add_argument("--rebuild-ledger", action="store_true",
                           help="first move the ledger aside and rebuild it from bronze's lineage")
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
    p.add_argument("path", help="field path as in the rescued data, e.g. device.fw.patch, meta.`CodePipeline.job` "
                                "(a name holding a dot backtick-quoted)")
    p.add_argument("--type", help="column type (Spark DDL, e.g. BIGINT); default: inferred from the rescued values")
    p.set_defaults(func=cmd_promote)
    sub.add_parser("demo", help="run the demo into ./.lake/demo: demo data, the whole pipeline, a summary") \
        .set_defaults(func=cmd_demo, offline=True)
    p = sub.add_parser("dev", help="`dagster dev` on the demo lake in ./.lake/demo (Ctrl-C stops it)")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--s3", action="store_true", help="instead: fresh demo data on a local (in-memory) S3 server")
    p.set_defaults(func=cmd_dev, offline=True)
    return parser


READS_LANDING = ("ingest", "reprocess", "status", "repair")


def _fail(command: str, message: str, exit_code: int = 2) -> int:
    for line in message.splitlines() or [""]:
        print(f"lake {command}: {line}", file=sys.stderr)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        lake = load_config(args.config)
        if not getattr(args, "offline", False):
            # Reach the lake first: an unreachable endpoint, missing credentials or a missing bucket
            # is one message here, not an engine traceback later (or a wrong "nothing ingested").
            from lake_assets.storage import check_bucket

            if args.command in READS_LANDING:
                check_bucket(lake.landing, "landing")
            check_bucket(lake.warehouse, "warehouse")
        return args.func(args, lake)
    except LakeError as exc:  # every error of ours: its message, the exit code of its class
        return _fail(args.command, str(exc), exc.exit_code)
    except Exception as exc:
        message = outside_error(exc)
        if message is None:
            raise
        return _fail(args.command, message)


if __name__ == "__main__":
    sys.exit(main())
