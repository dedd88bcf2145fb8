"""Bounded work per run (issue 15): batches cut by bytes commit one by one and stay exactly-once
across a crash or a failure between them; `lake status` counts only its landing days; the audit
reads only its days' ledger rows (and the baseline window) and judges as it did from the whole
ledger."""

from __future__ import annotations

import datetime as dt
import pytest

from lake_assets.config import ChecksConfig, parse_config
from lake_assets.core.bronze import run_batches
from lake_assets.core.ledger import COMMITTED, Entry, Ledger
from lake_assets.core.operations import OperatorError, status_days
from lake_assets.core.quality import audit_entries, baseline, day_facts
from lake_assets.storage import FileInfo
from lake_assets_tests.scenario_helpers import DAY1, DAY2, SOURCE, Lake, lines_for

DAY3 = "2026-01-03"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _source(**options):
    body = "".join(f"    {k}: {v}\n" for k, v in {"path": "s/", "start_date": DAY1, **options}.items())
    return parse_config(f"landing: /l\nwarehouse: /w\nsources:\n  s:\n{body}").source("s")


@pytest.mark.parametrize("sizes, options, max_batches, expected", [
    ([10, 10, 10], {}, None, [[10, 10, 10]]),                                           # defaults: one batch
    ([10, 10, 10, 10], {"max_bytes_per_batch": 20}, None, [[10, 10], [10, 10]]),
    ([50, 10, 10], {"max_bytes_per_batch": 20}, None, [[50], [10, 10]]),                # a big file: its own batch
    ([10] * 5, {"max_bytes_per_batch": 20, "max_files_per_run": 3}, None, [[10, 10], [10], [10, 10]]),
    # a sensor's run takes one run's worth (max_bytes_per_run), cut into batches: none left behind
    ([10] * 6, {"max_bytes_per_batch": 20, "max_bytes_per_run": 40}, 1, [[10, 10], [10, 10]]),
    ([10] * 6, {"max_bytes_per_batch": 20, "max_bytes_per_run": 40}, 2, [[10, 10], [10, 10], [10, 10]]),
])
def test_run_batches_cut_runs_by_bytes(sizes, options, max_batches, expected):
    files = [FileInfo(f"/l/s/{i}.json", size, f"e{i}", T0) for i, size in enumerate(sizes)]
    got = run_batches(files, _source(**options), max_batches)
    assert [[f.size for f in b] for b in got] == expected
    assert [f for b in got for f in b] == files[:sum(map(len, expected))]   # in order, each once


def test_the_default_batch_is_bounded():
    assert _source().max_bytes_per_batch == 256 * 1024**2


def _batches(lake: Lake) -> dict[str, str]:
    return {e["uri"]: e["batch_id"] for e in lake.ledger()}


def test_batches_by_bytes_commit_separately_and_survive_a_crash_between_them(tmp_path):
    lake = Lake(tmp_path, max_bytes_per_batch=1)          # every file is a batch of its own
    lake.standard_day(DAY1)
    lake.land(DAY2, "d.json", lines_for("d", 2))
    crashed = lake.ingest(DAY1, DAY2, LAKE_CRASH_AT="committed")   # killed once the first batch committed
    assert crashed.returncode == -9, str(crashed)
    first = lake.ledger()
    assert [e["status"] for e in first] == [COMMITTED], first      # that batch stays; nothing else was claimed
    lake.ingest_ok(DAY1, DAY2)
    lake.assert_exactly_once("crash between batches")
    batches = _batches(lake)
    assert len(set(batches.values())) == 4, batches                # one commit per file
    assert batches[first[0]["uri"]] == first[0]["batch_id"]        # the committed batch was not redone
    lake.assert_valid()


def test_a_failed_batch_leaves_the_other_batches_committed(tmp_path):
    lake = Lake(tmp_path, max_bytes_per_batch=1)
    lake.standard_day(DAY1)
    failing = lake.uri(DAY1, "b.json")
    r = lake.ingest(DAY1, LAKE_FAIL_AT="scanned:b.json")
    assert r.returncode == 1, str(r)
    lake.assert_exactly_once("one batch failed", failed={failing: "fault injected at scanned"})
    assert len(set(_batches(lake).values())) == 3
    lake.ingest_ok(DAY1)                                           # the failed file loads on the rerun
    lake.assert_exactly_once("after the rerun")
    lake.assert_valid()


@pytest.mark.parametrize("start, end, expected", [
    (None, None, ("2026-11-26", "2026-12-02", 7)),
    ("2026-11-30", None, ("2026-11-30", "2026-12-02", 3)),
    (None, "2026-01-03", ("2025-12-28", "2026-01-03", 7)),
    ("2026-01-01", "2026-01-01", ("2026-01-01", "2026-01-01", 1)),
])
def test_status_days(start, end, expected):
    days = status_days(start, end, dt.date(2026, 12, 2))
    assert (days[0], days[-1], len(days)) == expected


def test_status_days_rejects_a_reversed_range():
    with pytest.raises(OperatorError, match="before"):
        status_days("2026-01-05", "2026-01-01", dt.date(2026, 12, 2))


def test_status_counts_only_its_days(tmp_path):
    lake = Lake(tmp_path)
    lake.standard_day(DAY1)                                   # 3 files, 10 records, 2 malformed
    lake.land(DAY2, "d.json", lines_for("d", 2))
    lake.ingest_ok(DAY1, DAY2)
    lake.land(DAY3, "e.json", lines_for("e", 1))              # landed, not ingested
    lake.land(DAY1, "b.json", lines_for("b2", 3))             # changed since its commit: pending again

    def status(*args):
        r = lake.run("status", SOURCE, "--json", *args)
        assert r.returncode == 0, str(r)
        return r.json

    one = status("--from", DAY1, "--to", DAY1)
    assert one["days"] == {"from": DAY1, "to": DAY1}
    assert one["files"] == {"committed": 3, "pending": 1, "skipped_not_data": 0}
    assert (one["records"], one["malformed"]) == (10, 2)
    later = status("--from", DAY2, "--to", DAY3)
    assert later["files"] == {"committed": 1, "pending": 1, "skipped_not_data": 0} and later["records"] == 2
    every = status("--all")
    assert every["days"] == "all"
    assert every["files"] == {"committed": 4, "pending": 2, "skipped_not_data": 0} and every["records"] == 12
    recent = status()                                         # the default: the last 7 days, none of these
    today = dt.datetime.now(dt.timezone.utc).date()
    assert recent["days"] == {"from": (today - dt.timedelta(days=6)).isoformat(), "to": today.isoformat()}
    assert recent["files"] == {"pending": 0, "skipped_not_data": 0} and recent["records"] == 0
    assert recent["schema_version"] == every["schema_version"] == 0
    table = lake.run("status", SOURCE)
    assert table.returncode == 0 and table.stdout.startswith("source"), str(table)
    assert f"landing days {recent['days']['from']}..{today} (the last 7; --from/--to or --all)" in table.stderr


# ---------------------------------------------------------------------------------- audit

def _day(n: int) -> str:
    return (dt.date(2026, 1, 1) + dt.timedelta(days=n - 1)).isoformat()


# Days 1-6 with rows, a gap (7-10), days 11-12; day 5 also holds a failed file and a file of no records.
HISTORY = {n: rescued for n, rescued in [(1, 1), (2, 4), (3, 2), (4, 8), (5, 3), (6, 5), (11, 9), (12, 1)]}


def _history_ledger(spark, uri: str) -> None:
    entries = [Entry(f"/l/{_day(n)}/f{i}.json", "e", 100, _day(n), COMMITTED, f"b{n}", "o", T0, T0,
                     10 * (i + 1), 0, rescued * (i + 1), None, 1) for n, rescued in HISTORY.items() for i in range(2)]
    entries += [Entry(f"/l/{_day(5)}/bad.json", "e", 5, _day(5), "failed", "b5", "o", T0, None, None, None, None,
                      "unreadable", 1),
                Entry(f"/l/{_day(5)}/empty.json", "e", 0, _day(5), COMMITTED, "b5", "o", T0, T0, 0, 0, 0, None, 1)]
    Ledger(spark, uri).rebuild(entries)


@pytest.mark.embedded
@pytest.mark.parametrize("days, window", [
    ([6], {3, 4, 5, 6}),                 # continuous history: the 3 days before, no more
    ([12], {5, 6, 11, 12}),              # after a gap: the last 3 days with rows (11, 6, 5) are found
    ([2], {1, 2}),                       # the start of history: fewer days than the baseline wants
    ([11, 12], {4, 5, 6, 11, 12}),
    ([4, 6], {1, 2, 3, 4, 5, 6}),        # a range reads every day in it
])
def test_audit_reads_its_days_and_judges_as_from_the_whole_ledger(tmp_path, spark, days, window):
    uri = str(tmp_path / "ledger")
    _history_ledger(spark, uri)
    checks = ChecksConfig(baseline_days=3, baseline_min_days=2)
    everything = Ledger(spark, uri).entries()
    dates = [_day(n) for n in days]
    scoped = audit_entries(spark, uri, dates, checks)
    assert set(scoped.items()) <= set(everything.items())
    assert {e.landing_date for e in scoped.values()} == {_day(n) for n in window}
    for day in dates:
        assert baseline(scoped, day, checks) == baseline(everything, day, checks)
    assert day_facts(scoped, dates, ["b12"]) == day_facts(everything, dates, ["b12"])


@pytest.mark.embedded
def test_audit_of_a_lake_without_a_ledger(tmp_path, spark):
    assert audit_entries(spark, str(tmp_path / "none"), [DAY1], ChecksConfig()) == {}

