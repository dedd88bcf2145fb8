"""`format: dynamodb` B and BS attributes land as BINARY and ARRAY<BINARY> (embedded engine, read
back with delta-rs as the decoded bytes): on the pyarrow path and on the walk alike; a B attribute
later seen as S is an ordinary type conflict (rescued); and a `BINARY` schema hint reads base64
strings of any JSON source the same way."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import pytest

from lake_assets.core import pyarrow_scan, tables, typed_rows
from lake_assets_tests.scenario_helpers import Lake

MODES = ["addNewColumns", "rescue", "failOnNewColumns", "none"]


pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


def _lake(root: Path, mode: str, keys: dict | None = None) -> Lake:
    return Lake(root, source="src", schema_evolution_mode=mode, **({"format": "dynamodb"} if keys is None else keys))


def _put(lake: Lake, key: str, lines: list[dict]) -> None:
    lake.put(key, b"\n".join(json.dumps(r).encode() for r in lines) + b"\n")


def _table(lake: Lake, table: str = "bronze") -> list[dict]:
    frame = lake.frame(getattr(lake.layout, table))
    return [] if frame.empty else frame.sort_values(["_source_file", "_line"]).to_dict("records")


def _null(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))  # pandas reads null strings as NaN


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _blob(i: int) -> bytes:
    return bytes([0, 255, i]) + f"photo-{i}".encode()


def _item(i: int) -> dict:
    return {"Item": {"pk": {"S": f"user#{i}"}, "photo": {"B": _b64(_blob(i))},
                     "thumbs": {"BS": [_b64(_blob(i)[:2]), _b64(b"")]},
                     "meta": {"M": {"sig": {"B": _b64(bytes([i]) * 3)}, "note": {"S": "x"}}},
                     "chunks": {"L": [{"B": _b64(b"c%d" % i)}]}}}


def _check_values(rows: list[dict]) -> None:
    for row in rows:
        i = int(row["pk"].split("#")[1])
        assert bytes(row["photo"]) == _blob(i)
        assert [bytes(b) for b in row["thumbs"]] == [_blob(i)[:2], b""]
        assert bytes(row["meta"]["sig"]) == bytes([i]) * 3 and row["meta"]["note"] == "x"
        assert [bytes(b) for b in row["chunks"]] == [b"c%d" % i]


@pytest.mark.parametrize("mode", MODES)
def test_b_and_bs_land_as_binary_and_array_of_binary(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode)
    _put(lake, "2026/01/02/data.json", [_item(i) for i in range(4)])
    result = lake.ingest_with(spark, "2026-01-02")
    rows = _table(lake)
    assert result.records == 4 == len(rows) and not _table(lake, "quarantine")
    assert all(_null(r["_rescued_data"]) for r in rows)
    _check_values(rows)
    schema = tables.schema_or_none(spark, lake.layout.bronze)
    assert {f.name: f.dataType.simpleString() for f in schema.fields if f.name in ("photo", "thumbs", "meta", "chunks")
            } == {"photo": "binary", "thumbs": "array<binary>", "meta": "struct<sig:binary,note:string>",
                  "chunks": "array<binary>"}
    # Sail reads the same bytes back
    got = {r["pk"]: bytes(r["photo"]) for r in spark.read.format("delta")
           .load(lake.layout.bronze).select("pk", "photo").collect()}
    assert got == {f"user#{i}": _blob(i) for i in range(4)}


@pytest.mark.parametrize("mode", MODES)
def test_a_b_attribute_later_seen_as_s_is_rescued(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode)
    _put(lake, "2026/01/01/data.json", [_item(0), _item(1)])
    lake.ingest_with(spark, "2026-01-01")
    later = [_item(2), _item(3)]
    later[0]["Item"]["photo"] = {"S": "user photo #2"}     # S where the column is BINARY
    later[1]["Item"]["photo"] = {"N": "7"}
    _put(lake, "2026/01/02/data.json", later + [{"Item": {"pk": {"Z": "?"}}}])
    result = lake.ingest_with(spark, "2026-01-02")
    rows, bad = _table(lake), _table(lake, "quarantine")
    assert len(rows) + len(bad) == 5 and len(bad) == 1 and result.records == 2
    day2 = {r["pk"]: r for r in rows if r["_landing_date"] == "2026-01-02"}
    assert _null(day2["user#2"]["photo"]) and json.loads(day2["user#2"]["_rescued_data"])["photo"] == "user photo #2"
    assert _null(day2["user#3"]["photo"]) and json.loads(day2["user#3"]["_rescued_data"])["photo"] == 7
    assert [bytes(b) for b in day2["user#2"]["thumbs"]] == [_blob(2)[:2], b""]   # the rest as usual


def _contents(lake: Lake) -> list[tuple]:
    def plain(v):
        if isinstance(v, (bytes, bytearray)):
            return bytes(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if hasattr(v, "tolist"):
            return [plain(x) for x in v.tolist()]
        if isinstance(v, list):
            return [plain(x) for x in v]
        return None if _null(v) else v
    def rescued(text):
        return None if _null(text) else {k: v for k, v in json.loads(text).items() if k != "_file_path"}
    keep = ("pk", "photo", "thumbs", "meta", "chunks", "_line")
    return sorted((*(repr(plain(r[k])) for k in keep), repr(rescued(r["_rescued_data"]))) for r in _table(lake))


def test_the_pyarrow_path_lands_what_walking_every_record_lands(spark, tmp_path, monkeypatch):
    """One file the pyarrow path conforms as it is; one whose B column holds an S value that is
    not base64 (that file goes to the walk); both equal to walking every record."""
    def write(root):
        lake = _lake(root, "addNewColumns")
        _put(lake, "2026/01/02/clean.json", [_item(i) for i in range(5)])
        mixed = [_item(i) for i in range(5, 9)]
        mixed[2]["Item"]["photo"] = {"S": "not base64!"}
        _put(lake, "2026/01/02/mixed.json", mixed)
        return lake
    walked, original = set(), typed_rows.walked_batch

    def spy(out, declared, fitter, lines, f):
        walked.add(f["uri"].rsplit("/", 1)[-1])
        return original(out, declared, fitter, lines, f)
    monkeypatch.setattr(typed_rows, "walked_batch", spy)
    fast = write(tmp_path / "fast")
    r_fast = fast.ingest_with(spark, "2026-01-02")
    assert walked == {"mixed.json"}  # clean.json: its pyarrow parse, base64 decoded by conform
    monkeypatch.setattr(typed_rows, "walked_batch", original)
    slow = write(tmp_path / "slow")
    monkeypatch.setattr(pyarrow_scan, "arrow_scan", lambda data: None)  # the Python scan: every record walked
    r_slow = slow.ingest_with(spark, "2026-01-02")
    assert (r_fast.records, r_fast.rescued) == (r_slow.records, r_slow.rescued) == (9, 1)
    assert _contents(fast) == _contents(slow)
    rows = _table(fast)
    _check_values([r for r in rows if r["pk"] != "user#7"])
    assert json.loads([r for r in rows if r["pk"] == "user#7"][0]["_rescued_data"])["photo"] == "not base64!"


def test_a_binary_hint_decodes_base64_strings_of_plain_json(spark, tmp_path):
    lake = _lake(tmp_path, "addNewColumns", {"schema_hints": "blob BINARY, parts.element BINARY"})
    _put(lake, "2026/01/02/a.json", [{"id": 1, "blob": _b64(b"\x01\x02"), "parts": [_b64(b"p")]},
                                     {"id": 2, "blob": "%%%", "parts": []}, {"id": 3, "blob": 5}])
    result = lake.ingest_with(spark, "2026-01-02")
    rows = {r["id"]: r for r in _table(lake)}
    assert result.records == 3 and bytes(rows[1]["blob"]) == b"\x01\x02"
    assert [bytes(p) for p in rows[1]["parts"]] == [b"p"]
    assert json.loads(rows[2]["_rescued_data"])["blob"] == "%%%" and json.loads(rows[3]["_rescued_data"])["blob"] == 5
    assert _null(rows[1]["_rescued_data"])


def test_b_attributes_named_element_or_holding_dots_are_binary_by_name(spark, tmp_path):
    """Binary paths are field paths: a map key `element` is a name (not an array's elements) and a
    key `a.b` one name, at the top, inside a map and inside a list's maps."""
    lake = _lake(tmp_path, "addNewColumns")
    items = [{"Item": {"pk": {"S": f"user#{i}"}, "element": {"B": _b64(b"top%d" % i)},
                       "meta": {"M": {"element": {"B": _b64(b"m%d" % i)}, "a.b": {"B": _b64(b"d%d" % i)},
                                      "note": {"S": "element"}}},
                       "rows": {"L": [{"M": {"element": {"B": _b64(b"r%d" % i)}}}]}}} for i in range(3)]
    _put(lake, "2026/01/02/data.json", items)
    result = lake.ingest_with(spark, "2026-01-02")
    schema = tables.schema_or_none(spark, lake.layout.bronze)
    assert {f.name: f.dataType.simpleString() for f in schema.fields if f.name in ("element", "meta", "rows")} == {
        "element": "binary", "meta": "struct<element:binary,a.b:binary,note:string>",
        "rows": "array<struct<element:binary>>"}
    rows = _table(lake)
    assert result.records == 3 and all(_null(r["_rescued_data"]) for r in rows)
    for row in rows:
        i = int(row["pk"].split("#")[1])
        assert (bytes(row["element"]), bytes(row["meta"]["element"]), bytes(row["meta"]["a.b"])) == (
            b"top%d" % i, b"m%d" % i, b"d%d" % i)
        assert row["meta"]["note"] == "element" and [bytes(r["element"]) for r in row["rows"]] == [b"r%d" % i]
