"""A gzip cut mid-stream (a Firehose object whose upload was cut) under `on_corrupt: salvage`: the
records that decompressed whole land, the one the cut ends in is quarantined, and the run reports
how many bytes decompressed, so records in = bronze + quarantine + the records past that point.
Firehose's concatenated objects, NDJSON, pretty-printed documents (`multiline`), one top-level array
and a CloudTrail `{"Records": [...]}` document; `fail` and `skip` are unchanged. Embedded engine,
read back with delta-rs."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pytest

from lake_assets_tests.scenario_helpers import Lake

DAY = "2026-01-02"
KEY = "2026/01/02/03/firehose-1-2026-01-02-03-00-00-abc.gz"
RECORDS = [{"id": i, "event": {"kind": ["click", "view", "buy"][i % 3], "ms": i * 7, "tag": "t" * (i % 40)}}
           for i in range(3000)]
SHAPES = {  # name: (source keys, how each record is written, between records, before the first, after the last)
    "firehose": ({}, lambda r: json.dumps(r), "", "", ""),
    "ndjson": ({}, lambda r: json.dumps(r), "\n", "", ""),
    "multiline": ({"multiline": True}, lambda r: json.dumps(r, indent=2), "\n", "", ""),
    "array": ({"multiline": True}, lambda r: json.dumps(r, indent=1), ",\n", "[\n", "\n]"),
    "cloudtrail": ({"records_path": "Records"}, lambda r: json.dumps(r), ",", '{"Records":[', "]}"),
}


pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


def _lake(root: Path, on_corrupt: str, keys: dict | None = None) -> Lake:
    return Lake(root, source="src", on_corrupt=on_corrupt, **(keys or {}))


def _land_cut(lake: Lake, shape: str, keep: float) -> tuple[str, list[str]]:
    """The records written in `shape`, gzipped and cut after `keep` of the compressed bytes; (uri, texts)."""
    _, dump, sep, before, after = SHAPES[shape]
    texts = [dump(r) for r in RECORDS]
    data = gzip.compress((before + sep.join(texts) + after).encode())
    return lake.put(KEY, data[:int(len(data) * keep)]), texts


def _table(lake: Lake, table: str) -> list[dict]:
    return lake.frame(getattr(lake.layout, table)).to_dict("records")


def _split(texts: list[str], shape: str, decompressed: int) -> tuple[int, int, int]:
    """(records that end within the first `decompressed` bytes, records cut by that point, records after it)."""
    sep, at = SHAPES[shape][2], len(SHAPES[shape][3])
    ends = []
    for text in texts:
        ends.append((at, at + len(text.encode())))
        at += len(text.encode()) + len(sep)
    whole = sum(1 for _, end in ends if end <= decompressed)
    past = sum(1 for start, _ in ends if start >= decompressed)
    return whole, len(texts) - whole - past, past


@pytest.mark.parametrize("shape", list(SHAPES))
def test_salvage_keeps_the_whole_records_and_quarantines_the_cut_one(spark, tmp_path, shape):
    lake = _lake(tmp_path, "salvage", SHAPES[shape][0])
    uri, texts = _land_cut(lake, shape, 0.55)
    said: list[str] = []
    result = lake.ingest_with(spark, DAY, log=said.append)
    lost = result.salvaged[uri]
    decompressed = int(re.search(r"loaded the (\d+) byte\(s\)", lost).group(1))
    assert any(s.startswith(f"{uri}: salvaged:") for s in said)
    rows, bad = _table(lake, "bronze"), _table(lake, "quarantine")
    whole, cut, past = _split(texts, shape, decompressed)
    assert 1000 < whole < 2500 and len(rows) == whole and len(bad) == cut == 1
    assert len(RECORDS) == len(rows) + len(bad) + past  # in = bronze + quarantine + what the report says is lost
    got = sorted(rows, key=lambda r: r["id"])
    assert [(r["id"], r["event"]["kind"], r["event"]["ms"]) for r in got] == [
        (r["id"], r["event"]["kind"], r["event"]["ms"]) for r in RECORDS[:whole]]
    position = "_line" if shape == "ndjson" else "_record"
    assert sorted(int(r[position]) for r in rows) == [i + (position == "_line") for i in range(whole)]
    assert all(math.isnan(r["_record"]) for r in rows) == (shape == "ndjson")  # NDJSON keeps its lines
    assert int(bad[0][position]) == whole + (position == "_line")
    assert texts[whole].startswith(bad[0]["_raw"].strip()) and bad[0]["_raw"].strip()  # the cut record, as it is
    entry = {e["uri"]: e for e in lake.ledger()}[uri]
    assert (entry["status"], entry["records"], entry["malformed"]) == ("committed", whole, 1)
    assert "salvaged" in entry["error"]
    again = lake.ingest_with(spark, DAY)
    assert again.records == 0 and len(_table(lake, "bronze")) == whole  # not loaded again


@pytest.mark.parametrize("on_corrupt", ["fail", "skip"])
def test_fail_and_skip_load_nothing_of_a_cut_firehose_object(spark, tmp_path, on_corrupt):
    lake = _lake(tmp_path, on_corrupt)
    uri, _ = _land_cut(lake, "firehose", 0.55)
    result = lake.ingest_with(spark, DAY)
    assert result.records == 0 and not _table(lake, "bronze") and not result.salvaged
    errors = result.failed if on_corrupt == "fail" else result.skipped_corrupt
    assert list(errors) == [uri] and "gzip" in errors[uri]
    entry = {e["uri"]: e for e in lake.ledger()}[uri]
    assert entry["status"] == ("failed" if on_corrupt == "fail" else "skipped")


def test_a_whole_firehose_gzip_is_not_salvaged(spark, tmp_path):
    lake = _lake(tmp_path, "salvage")
    uri, _ = _land_cut(lake, "firehose", 1.0)
    result = lake.ingest_with(spark, DAY)
    assert result.records == len(RECORDS) and not result.salvaged and not _table(lake, "quarantine")
    assert not any(math.isnan(r["_record"]) for r in _table(lake, "bronze"))


# ---------------------------------------------------------------- what framing keeps of a cut file (no engine)

CUT_CASES = [  # (framing, the decompressed part, records kept, the cut text quarantined or None)
    ({}, b'{"a":1}{"a":2}{"a":', [{"a": 1}, {"a": 2}], '{"a":'),                       # Firehose
    ({}, b'{"a":1}{"a":2}', [{"a": 1}, {"a": 2}], None),                               # cut between values
    ({"multiline": True}, b'[{"a":1},{"a":[2,"]"]},{"a', [{"a": 1}, {"a": [2, "]"]}], '{"a'),
    ({"multiline": True}, b'[{"a":1},{"a":2}', [{"a": 1}, {"a": 2}], None),             # the last element whole
    ({"records_path": ("Records",)}, b'{"Records":[{"a":"\\"}"},{"b', [{"a": '"}'}], '{"b'),
    ({"multiline": True}, b'[{"a":1', [], '[{"a":1'),                                  # cut in the first record
]


@pytest.mark.parametrize("options, data, kept, quarantined", CUT_CASES)
def test_a_cut_file_keeps_its_whole_records(options, data, kept, quarantined):
    from lake_assets.core import framing

    source = framing.Framing(**options)
    framed = framing.frame(data, source, cut=True) if not source.plain else framing.concatenated(data, source, True)
    lines = framed.data.split(b"\n")
    assert [json.loads(line) for line in lines if line != framing.BAD] == kept
    assert [text for text, _ in framed.errors.values()] == ([quarantined] if quarantined else [])


def test_a_cut_ndjson_file_stays_ndjson_and_an_uncut_one_is_not_split():
    from lake_assets.core import framing

    assert framing.concatenated(b'{"a":1}\n\n{"a":2}\n{"a":', framing.Framing(), True) is None  # keeps its lines
    assert framing.concatenated(b'{"a":1}{"a":2}{"a":', framing.Framing(), False) is None    # not salvaged: malformed
