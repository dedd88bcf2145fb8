"""The pure decisions of ingestion and discovery, table-driven and without Spark: which listed files a
run claims (bronze.plan), how they are grouped (bronze.batches), when a claim is stale
(ledger.is_stale), what a sensor tick finds (discovery.discover, over real local files), what it
remembers (discovery.Cursor) and what an S3 event notification names (discovery.s3_event_records).
Each row states its input and the exact outcome."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess

import pytest

from lake_assets import storage
from lake_assets.config import SourceConfig
from lake_assets.core import bronze
from lake_assets.core.discovery import Cursor, discover, s3_event_records
from lake_assets.core.ledger import COMMITTED, FAILED, PROCESSING, RELEASED, SKIPPED, Entry, is_stale

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
HOST = socket.gethostname()
ALIVE = f"{HOST}:{os.getpid()}:run"       # this test process: alive


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


DEAD = f"{HOST}:{_dead_pid()}:run"        # a process of this host that has exited


def entry(status: str, etag: str = "e1", owner: str | None = "elsewhere:1:run", claimed_minutes_ago: float | None = 1,
          uri: str = "s3://l/src/2026/11/20/a.json") -> Entry:
    claimed = None if claimed_minutes_ago is None else NOW - dt.timedelta(minutes=claimed_minutes_ago)
    return Entry(uri, etag, 10, "2026-11-20", status, "b0", owner, claimed)


# ---------------------------------------------------------------- ledger.is_stale

@pytest.mark.parametrize("status, owner, claimed_minutes_ago, stale", [
    (PROCESSING, "elsewhere:1:run", 1, False),      # another host's fresh claim: its owner may still finish
    (PROCESSING, "elsewhere:1:run", 121, True),     # older than the 120 min timeout
    (PROCESSING, "elsewhere:1:run", 120, False),    # exactly the timeout is not past it
    (PROCESSING, "elsewhere:1:run", None, True),    # a claim without a time
    (PROCESSING, ALIVE, 1, False),                  # this host, the process is alive
    (PROCESSING, DEAD, 1, True),                    # this host, the process is gone
    (PROCESSING, f"{HOST}:notapid:run", 1, False),  # this host, no pid to check
    (PROCESSING, None, 1, False),                   # no owner: only the timeout can free it
    (PROCESSING, DEAD, 500, True),
    (COMMITTED, DEAD, 500, False),                  # only processing claims can be stale
    (FAILED, None, None, False),
    (RELEASED, DEAD, 1, False),
    (SKIPPED, None, 500, False),
])
def test_is_stale(status, owner, claimed_minutes_ago, stale):
    e = entry(status, owner=owner, claimed_minutes_ago=claimed_minutes_ago)
    assert is_stale(e, NOW, dt.timedelta(minutes=120)) is stale


# ---------------------------------------------------------------- bronze.batches

def info(name: str, size: int = 1, etag: str = "e1") -> storage.FileInfo:
    return storage.FileInfo(f"s3://l/src/2026/11/20/{name}", size, etag, NOW)


@pytest.mark.parametrize("sizes, max_files, max_bytes, groups", [
    ([], 10, 100, []),
    ([1, 1, 1, 1, 1], 2, 100, [[1, 1], [1, 1], [1]]),      # max_files
    ([1, 1, 1], 1, 100, [[1], [1], [1]]),
    ([4, 4, 4], 10, 10, [[4, 4], [4]]),                     # max_bytes
    ([5, 5, 5], 10, 10, [[5, 5], [5]]),                     # exactly max_bytes fits
    ([20, 1], 10, 10, [[20], [1]]),                         # a file over max_bytes goes alone ...
    ([1, 20, 1], 10, 10, [[1], [20], [1]]),                 # ... never with others
    ([3, 3, 3, 3], 3, 7, [[3, 3], [3, 3]]),                 # the tighter bound wins
    ([2, 2, 2, 2], 3, 100, [[2, 2, 2], [2]]),
])
def test_batches(sizes, max_files, max_bytes, groups):
    files = [info(f"f{i}.json", size) for i, size in enumerate(sizes)]
    planned = [bronze.Planned(f, "2026-11-20", None) for f in files]
    for items in (files, planned):   # FileInfo and Planned batch the same
        got = bronze.batches(items, max_files, max_bytes)
        assert [[getattr(p, "file", p).size for p in b] for b in got] == groups
        assert [p for b in got for p in b] == items   # consecutive, nothing lost or reordered


# ---------------------------------------------------------------- bronze.plan
# Today's API: plan(listed [(FileInfo, day)], entries {uri: Entry}, source, reprocess, now)
#   -> (wanted [Planned(file, day, seen)], busy, ignored overwrites). Kept in this one block so a
#   reshaped plan (FileTask / BatchPlan) only changes `run_plan`.

def run_plan(listed_etags: dict[str, str], entries: dict[str, Entry], on_overwrite: str = "reprocess",
             reprocess: bool = False) -> tuple[list[tuple[str, str | None]], int, int]:
    """[(name wanted, status of the entry it was planned against)], busy, ignored."""
    source = SourceConfig(name="src", path="src/", start_date="2026-11-01", on_overwrite=on_overwrite)
    listed = [(info(name, etag=etag), "2026-11-20") for name, etag in listed_etags.items()]
    by_uri = {info(name).uri: e for name, e in entries.items()}
    wanted, busy, ignored = bronze.plan(listed, by_uri, source, reprocess, NOW)
    for p in wanted:
        assert p.day == "2026-11-20" and p.seen is by_uri.get(p.file.uri)
    return [(p.file.uri.rsplit("/", 1)[1], p.seen.status if p.seen else None) for p in wanted], busy, ignored


PLAN_ROWS = {
    # id: (listed {name: etag}, ledger {name: Entry}, on_overwrite, reprocess, (wanted, busy, ignored))
    "new file": ({"a": "e1"}, {}, "reprocess", False, ([("a", None)], 0, 0)),
    "committed, same etag": ({"a": "e1"}, {"a": entry(COMMITTED)}, "reprocess", False, ([], 0, 0)),
    "committed, same etag, reprocess": ({"a": "e1"}, {"a": entry(COMMITTED)}, "reprocess", True,
                                        ([("a", COMMITTED)], 0, 0)),
    "committed, changed etag (reprocess)": ({"a": "e2"}, {"a": entry(COMMITTED)}, "reprocess", False,
                                            ([("a", COMMITTED)], 0, 0)),
    "committed, changed etag (ignore)": ({"a": "e2"}, {"a": entry(COMMITTED)}, "ignore", False, ([], 0, 1)),
    "changed etag (ignore) beats reprocess": ({"a": "e2"}, {"a": entry(COMMITTED)}, "ignore", True, ([], 0, 1)),
    "committed, same etag (ignore)": ({"a": "e1"}, {"a": entry(COMMITTED)}, "ignore", False, ([], 0, 0)),
    "committed, same etag (fail)": ({"a": "e1"}, {"a": entry(COMMITTED)}, "fail", False, ([], 0, 0)),
    "fresh claim elsewhere": ({"a": "e1"}, {"a": entry(PROCESSING)}, "reprocess", False, ([], 1, 0)),
    "fresh claim elsewhere, reprocess": ({"a": "e1"}, {"a": entry(PROCESSING)}, "reprocess", True, ([], 1, 0)),
    "fresh claim, changed etag": ({"a": "e2"}, {"a": entry(PROCESSING)}, "fail", False, ([], 1, 0)),
    "timed-out claim": ({"a": "e1"}, {"a": entry(PROCESSING, claimed_minutes_ago=121)}, "reprocess", False,
                        ([("a", PROCESSING)], 0, 0)),
    "claim of a dead process": ({"a": "e1"}, {"a": entry(PROCESSING, owner=DEAD)}, "reprocess", False,
                                ([("a", PROCESSING)], 0, 0)),
    "failed: retried": ({"a": "e1"}, {"a": entry(FAILED)}, "reprocess", False, ([("a", FAILED)], 0, 0)),
    "failed, changed etag (fail mode)": ({"a": "e2"}, {"a": entry(FAILED)}, "fail", False, ([("a", FAILED)], 0, 0)),
    "released: loaded again": ({"a": "e1"}, {"a": entry(RELEASED)}, "reprocess", False, ([("a", RELEASED)], 0, 0)),
    "skipped corrupt, same etag": ({"a": "e1"}, {"a": entry(SKIPPED)}, "reprocess", False, ([], 0, 0)),
    "skipped corrupt, changed etag": ({"a": "e2"}, {"a": entry(SKIPPED)}, "ignore", False, ([("a", SKIPPED)], 0, 0)),
    "skipped corrupt, reprocess": ({"a": "e1"}, {"a": entry(SKIPPED)}, "reprocess", True, ([("a", SKIPPED)], 0, 0)),
    "a mix, in listing order": (
        {"new": "e1", "done": "e1", "busy": "e1", "over": "e2", "stale": "e1"},
        {"done": entry(COMMITTED), "busy": entry(PROCESSING), "over": entry(COMMITTED),
         "stale": entry(PROCESSING, owner=DEAD)}, "ignore", False, ([("new", None), ("stale", PROCESSING)], 1, 1)),
    "a mix, reprocess": (
        {"new": "e1", "done": "e1", "busy": "e1", "over": "e2"},
        {"done": entry(COMMITTED), "busy": entry(PROCESSING), "over": entry(COMMITTED)}, "reprocess", True,
        ([("new", None), ("done", COMMITTED), ("over", COMMITTED)], 1, 0)),
}


@pytest.mark.parametrize("listed, entries, on_overwrite, reprocess, outcome", PLAN_ROWS.values(), ids=PLAN_ROWS)
def test_plan(listed, entries, on_overwrite, reprocess, outcome):
    assert run_plan(listed, entries, on_overwrite, reprocess) == outcome


@pytest.mark.parametrize("reprocess", [False, True])
def test_plan_on_overwrite_fail_names_the_overwritten_files(reprocess):
    entries = {"a": entry(COMMITTED), "b": entry(COMMITTED), "c": entry(COMMITTED)}
    with pytest.raises(bronze.IngestError) as err:
        run_plan({"a": "e2", "b": "e1", "c": "e3"}, entries, "fail", reprocess)
    text = str(err.value)
    assert "2 file(s) were overwritten" in text and "on_overwrite: fail" in text
    assert info("a").uri in text and info("c").uri in text and info("b").uri not in text


# ---------------------------------------------------------------- discovery.Cursor

FULL = Cursor(["raw/", "%Y/%m/%d"], {"2026-11-20": {"k1": "e1"}, "2026-11-19": {}}, 1763640000.5, ["r1", "r2"])


@pytest.mark.parametrize("text, cursor", [
    (None, Cursor()),
    ("", Cursor()),
    ("not json", Cursor()),                       # unreadable: start over (costs one sweep)
    ('{"unknown": 1}', Cursor()),
    ("[1, 2]", Cursor()),
    ('{"layout": ["", "%Y/%m/%d"], "last_sweep": 5.0}', Cursor(["", "%Y/%m/%d"], {}, 5.0, [])),
    ('{"pending_deletes": ["h"]}', Cursor(None, {}, None, ["h"])),
    (FULL.dumps(), FULL),
    (Cursor().dumps(), Cursor()),
])
def test_cursor_loads(text, cursor):
    assert Cursor.loads(text) == cursor


def test_cursor_dumps_is_compact_json():
    assert Cursor(["", "%Y/%m/%d"], {"2026-11-20": {"k": "e"}}, 1.5, []).dumps() == \
        '{"layout":["","%Y/%m/%d"],"known":{"2026-11-20":{"k":"e"}},"last_sweep":1.5,"pending_deletes":[],"early":{}}'


# ---------------------------------------------------------------- discovery.discover
# Real local files; two ticks: the first (an empty cursor) always sweeps; the row says what lands
# between the ticks, how much later the second tick runs, and what it finds and remembers.

FIRST = ["2026/11/18/old.json", "2026/11/19/y.json", "2026/11/20/t.json"]


def _land(root, key: str, text: str = '{"a": 1}\n') -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(text)
    if old is not None:   # a rewrite must change the etag (mtime-size) even within the clock's resolution
        os.utime(path, ns=(old + 1_000_000, old + 1_000_000))


DISCOVER_ROWS = {
    # id: (keys landed between the ticks, hours later, ledger knows the first files, new {day: [names]}, swept,
    #      days the cursor remembers)
    "nothing new": ([], 1, False, {}, False, ["2026-11-19", "2026-11-20"]),
    "a file today": (["2026/11/20/c.json"], 1, False, {"2026-11-20": ["c.json"]}, False, ["2026-11-19", "2026-11-20"]),
    "a file yesterday": (["2026/11/19/c.json"], 1, False, {"2026-11-19": ["c.json"]}, False,
                         ["2026-11-19", "2026-11-20"]),
    "a rewritten file": (["2026/11/20/t.json"], 1, False, {"2026-11-20": ["t.json"]}, False,
                         ["2026-11-19", "2026-11-20"]),
    # reported early instead (no partition yet; test_discover_reports_a_future_dated_file_once_…)
    "a future folder": (["2026/11/23/f.json"], 1, False, {}, False, ["2026-11-19", "2026-11-20"]),
    "not data (selects)": (["2026/11/20/c.tmp"], 1, False, {}, False, ["2026-11-19", "2026-11-20"]),
    "late file, old folder, no sweep yet": (["2026/11/10/late.json"], 11, False, {}, False,
                                            ["2026-11-19", "2026-11-20"]),
    # 25 h later: today is 11-21, the window 11-20..11-21; 11-19 is pruned from the cursor.
    "late file found by the sweep": (["2026/11/10/late.json"], 25, True, {"2026-11-10": ["late.json"]}, True,
                                     ["2026-11-20"]),
    "sweep without the ledger": ([], 25, False, {"2026-11-18": ["old.json"], "2026-11-19": ["y.json"]}, True,
                                 ["2026-11-20"]),
}


@pytest.mark.parametrize("between, hours, ledger_knows, new, swept, known_days", DISCOVER_ROWS.values(),
                         ids=DISCOVER_ROWS)
def test_discover(tmp_path, between, hours, ledger_knows, new, swept, known_days):
    prefix = str(tmp_path / "src")
    selects = lambda uri: not uri.endswith(".tmp")  # noqa: E731
    for key in FIRST:
        _land(tmp_path / "src", key)
    first = discover(prefix, Cursor(), NOW, lookback_days=2, selects=selects)
    assert first.swept and first.listed == 3
    assert {d: [f.uri.rsplit("/", 1)[1] for f in fs] for d, fs in first.new.items()} == \
        {"2026-11-18": ["old.json"], "2026-11-19": ["y.json"], "2026-11-20": ["t.json"]}
    assert first.cursor.layout == ["", "%Y/%m/%d"] and first.cursor.last_sweep == NOW.timestamp()
    assert sorted(first.cursor.known) == ["2026-11-19", "2026-11-20"]   # only the look-back window
    committed = {f.uri: f.etag for f in storage.list_files(prefix)}

    for key in between:
        _land(tmp_path / "src", key, '{"a": 2, "b": 3}\n')
    cursor = Cursor.loads(first.cursor.dumps())   # as Dagster stores it between ticks
    second = discover(prefix, cursor, NOW + dt.timedelta(hours=hours), lookback_days=2,
                      sweep_every=dt.timedelta(hours=24), ingested=(lambda: committed) if ledger_knows else None,
                      selects=selects)
    assert {d: [f.uri.rsplit("/", 1)[1] for f in fs] for d, fs in second.new.items()} == new
    assert second.swept is swept
    assert sorted(second.cursor.known) == known_days
    assert second.cursor.last_sweep == (NOW + dt.timedelta(hours=hours) if swept else NOW).timestamp()


def test_discover_reports_a_future_dated_file_once_and_when_its_day_comes(tmp_path):
    """A file in a folder dated after today (a producer ahead of UTC) cannot run yet (no partition):
    it is reported early once, then new once on the tick its day has started, never again."""
    root, prefix = tmp_path / "src", str(tmp_path / "src")
    for key in FIRST:
        _land(root, key)
    cursor = discover(prefix, Cursor(), NOW, lookback_days=2).cursor
    committed = {f.uri: f.etag for f in storage.list_files(prefix)}   # the ledger has the first files
    _land(root, "2026/11/22/ahead.json")
    ticks = [NOW + dt.timedelta(minutes=m) for m in (1, 2, 3)]          # three ticks on 11-20
    ticks += [NOW + dt.timedelta(hours=25), NOW + dt.timedelta(hours=26)]  # 11-21: a sweep, then a tick
    ticks += [NOW + dt.timedelta(hours=37), NOW + dt.timedelta(hours=38)]  # 11-22 has started
    seen = []
    for now in ticks:
        found = discover(prefix, cursor, now, lookback_days=2, ingested=lambda: committed)
        cursor = Cursor.loads(found.cursor.dumps())
        seen.append(({d: [f.uri.rsplit("/", 1)[1] for f in fs] for d, fs in found.new.items()},
                     {d: [f.uri.rsplit("/", 1)[1] for f in fs] for d, fs in found.early.items()}))
    ahead = {"2026-11-22": ["ahead.json"]}
    assert seen == [({}, ahead), ({}, {}), ({}, {}), ({}, {}), ({}, {}), (ahead, {}), ({}, {})]


def test_discover_without_a_date_layout_sweeps_every_tick(tmp_path):
    for key in ["a.json", "sub/b.json"]:
        _land(tmp_path / "src", key)
    prefix = str(tmp_path / "src")
    now = dt.datetime.now(dt.timezone.utc)   # the files land by their last-modified day: today
    first = discover(prefix, Cursor(), now)
    assert first.swept and first.cursor.layout is None and first.cursor.last_sweep is None
    assert sum(len(fs) for fs in first.new.values()) == 2
    _land(tmp_path / "src", "c.json")
    second = discover(prefix, Cursor.loads(first.cursor.dumps()), now + dt.timedelta(minutes=1))
    assert second.swept and second.listed == 3
    assert [f.uri.rsplit("/", 1)[1] for fs in second.new.values() for f in fs] == ["c.json"]


# ---------------------------------------------------------------- discovery.s3_event_records

def s3_event(*records) -> dict:
    return {"Records": [{"eventSource": "aws:s3", "eventName": name, "s3": {"bucket": {"name": bucket},
                         "object": {"key": key, **({"eTag": etag} if etag else {})}}}
                        for name, bucket, key, etag in records]}


PUT = ("ObjectCreated:Put", "landing", "src/2026/11/20/a.json", "abc")


@pytest.mark.parametrize("body, records", [
    (json.dumps(s3_event(PUT)), [("landing", "src/2026/11/20/a.json", "abc")]),
    (json.dumps(s3_event(("ObjectCreated:CompleteMultipartUpload", "b", "k.json", "e-2"))), [("b", "k.json", "e-2")]),
    (json.dumps(s3_event(("ObjectCreated:Put", "b", "dt%3D2026-11-20/a+b.json", "e"))),
     [("b", "dt=2026-11-20/a b.json", "e")]),                                   # keys come URL-encoded
    (json.dumps(s3_event(("ObjectCreated:Copy", "b", "k.json", None))), [("b", "k.json", None)]),
    (json.dumps(s3_event(("ObjectRemoved:Delete", "b", "k.json", None))), []),
    (json.dumps(s3_event(PUT, ("ObjectRemoved:Delete", "b", "gone.json", None),
                         ("ObjectCreated:Post", "b", "k2.json", "e2"))),
     [("landing", "src/2026/11/20/a.json", "abc"), ("b", "k2.json", "e2")]),
    (json.dumps({"Type": "Notification", "Message": json.dumps(s3_event(PUT))}),     # wrapped by SNS
     [("landing", "src/2026/11/20/a.json", "abc")]),
    (json.dumps({"Type": "Notification", "Message": "not json"}), []),
    (json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "landing"}), []),
    (json.dumps({"Records": []}), []),
    (json.dumps([s3_event(PUT)]), []),
    ("not json {", []),
    ("", []),
])
def test_s3_event_records(body, records):
    assert s3_event_records(body) == records
