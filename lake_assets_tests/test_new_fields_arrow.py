"""New fields typed in Arrow: a file whose records bring fields the table lacks (top-level, nested,
inside arrays of structs) or values that never fit their column goes into bronze from the scan's
pyarrow parse, its misfit values moved to the rescued column, without walking its records
through the Fitter; and what lands is exactly what the walk lands, rescued JSON text included."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pyarrow as pa
import pytest

from lake_assets.core import pyarrow_scan, reader, typed_rows
from lake_assets.demo.data import generate_records, to_ndjson


def _typed(tmp_path, target, data: bytes, rescue_unknown: bool, monkeypatch) -> tuple[list[dict], list[dict], int]:
    """lake_typed over one file, from the scan's parse and with every line walked: (fast rows,
    walked rows, lines the fast pass walked)."""
    path = tmp_path / "part.json"
    path.write_bytes(data)
    info = {"uri": str(path), "size": len(data), "day": "2026-01-01", "malformed": []}
    options = {"schema": typed_rows.declared_schema(target).json(), "target": target.json(), "table": target.json(),
               "rescued_column": "_rescued_data", "rescue_unknown": "true" if rescue_unknown else "false"}
    walked = []
    original = typed_rows.walked_batch

    def spy(out, declared, fitter, lines, f):
        walked.extend(lines)
        return original(out, declared, fitter, lines, f)

    monkeypatch.setattr(typed_rows, "walked_batch", spy)
    out = []
    for typed in (True, False):
        if typed:
            scanned = list(reader._ScanReader({"files": json.dumps([info]), "keep_parsed": "true"})
                           .read(reader._Files([info])))
            assert scanned[0][6] == "arrow"  # the scan's engine: pyarrow parsed the file
        files = [{**info, "typed": typed}]
        batches = list(reader._TypedReader({"files": json.dumps(files), **options}).read(reader._Files(files)))
        rows = pa.Table.from_batches(batches).to_pylist()
        out.append(sorted(rows, key=lambda r: r["_line"]))
        if typed:
            fast_walked = len(walked)
    return out[0], out[1], fast_walked


def _schema(records: list[dict]):
    return pyarrow_scan.scan_bytes(to_ndjson(records))["schema"]


@pytest.mark.parametrize("rescue_unknown", [True, False], ids=["rescue", "none"])
def test_the_demos_drift_is_typed_in_arrow_and_lands_what_the_walk_lands(tmp_path, monkeypatch, rescue_unknown):
    day = dt.date(2026, 11, 18)
    target = _schema(generate_records(200, 7, day=1, date=day))  # the table: the day-1 shape
    data = to_ndjson(generate_records(400, 7, day=3, date=day))  # + battery_pct, device.fw.patch, signals[].unit
    fast, slow, walked = _typed(tmp_path, target, data, rescue_unknown, monkeypatch)
    assert walked == 0
    assert fast == slow  # every column, the rescued JSON text byte for byte
    first = orjson.loads(data.split(b"\n")[0])
    rescued = json.loads(fast[0]["_rescued_data"] or '{"_file_path": null}')
    assert rescued.pop("_file_path") in (str(tmp_path / "part.json"), None)
    expected = {"device.fw.patch": first["device"]["fw"]["patch"],
                **{f"signals[{i}].unit": s["unit"] for i, s in enumerate(first["signals"])},
                "battery_pct": first["battery_pct"]} if rescue_unknown else {}
    if isinstance(first["device"]["fw"]["minor"], str):  # a conflict: rescued in every mode
        expected = {"device.fw.minor": first["device"]["fw"]["minor"], **expected}
    assert rescued == expected
    conflicts = [r for r in fast if r["device"]["fw"]["minor"] is None]
    assert conflicts and all(json.loads(r["_rescued_data"])["device.fw.minor"].endswith("-beta") for r in conflicts)
    assert fast[0]["signals"][0]["name"] == first["signals"][0]["name"]


BASE = [{"id": 1, "s": {"x": 1, "arr": [{"k": "a"}]}, "items": [{"v": 1}], "grid": [[{"c": 1}]], "flag": True}]
NEW = [  # new fields everywhere, strings JSON must escape, keys a field path quotes, nulls at every level
    {"id": 2, "s": {"x": 2, "arr": [{"k": "b", "n": 'quote " back \\ nl \n tab \t ctl \x01 é 中'}, None, {"k": "c"}]},
     "items": [{"v": 2, "w": True}, {"v": 3, "w": False}], "grid": [[{"c": 2, "d": -5}], [], [{"c": 3}]],
     "a.b": "dotted", "br[0]": 1, "_file_path": "mine", "flag": "yes", "z": None},
    {"id": 3, "s": None, "items": None, "grid": [[{"c": 4, "d": 7}, None]], "flag": False, "late": "x"},
    {"id": 4, "s": {"x": 3, "arr": []}, "items": [{"v": 4, "w": None}]},
    {"id": 5},
]
# New fields whose JSON text arrow does not keep: objects, arrays, doubles (`2` and `2.0` parse alike)
UNKNOWN_SHAPES = [
    {"id": 10, "t": 2, "meta": {"k": 1, "z": None, "e": {}}, "tags": ["a", None], "items": [{"v": 1, "o": {"p": []}}]},
    {"id": 11, "t": 2.0, "meta": {}, "tags": [], "items": [{"v": 2, "o": {"p": [1.5]}}, {"v": 3, "o": None}]},
    {"id": 12, "t": 0.1, "meta": {"k": None}, "tags": [None], "items": [None, {"v": 4, "o": {"p": [2]}}]},
    {"id": 13, "t": -1e300, "meta": None, "tags": None, "flag": True},
]
CONFLICT_IN_ARRAYS = [{"id": 6, "items": [{"v": "text"}, {"v": "more"}]}, {"id": 7, "items": [{"v": 2}]},
                      {"id": 8, "items": [None, {"v": "x"}]}]


@pytest.mark.parametrize("rescue_unknown", [True, False], ids=["rescue", "none"])
def test_new_fields_inside_arrays_and_awkward_keys_land_what_the_walk_lands(tmp_path, monkeypatch, rescue_unknown):
    target = _schema(BASE)
    data = to_ndjson(NEW)
    fast, slow, walked = _typed(tmp_path, target, data, rescue_unknown, monkeypatch)
    assert walked == 0
    assert fast == slow
    rescued = [r["_rescued_data"] and json.loads(r["_rescued_data"]) for r in fast]
    for r in rescued:
        if r:
            r.pop("_file_path")
    if rescue_unknown:
        assert rescued[0] == {"s.arr[0].n": NEW[0]["s"]["arr"][0]["n"], "items[0].w": True, "items[1].w": False,
                              "grid[0][0].d": -5, "`a.b`": "dotted", "`br[0]`": 1, "`_file_path`": "mine",
                              "flag": "yes"}
        assert rescued[1] == {"grid[0][0].d": 7, "late": "x"}
    else:  # none: unknown fields are left out; values that never fit their column are rescued
        assert rescued[0] == {"flag": "yes"} and rescued[1] is None
    assert rescued[2] is None and rescued[3] is None
    assert [r["s"] and r["s"]["x"] for r in fast] == [2, None, 3, None]
    assert [r["flag"] for r in fast] == [None, False, None, None]


@pytest.mark.parametrize("rescue_unknown", [True, False], ids=["rescue", "none"])
def test_new_objects_arrays_and_doubles_are_rescued_from_their_own_text(tmp_path, monkeypatch, rescue_unknown):
    fast, slow, walked = _typed(tmp_path, _schema(BASE), to_ndjson(UNKNOWN_SHAPES), rescue_unknown, monkeypatch)
    assert walked == 0
    assert fast == slow
    rescued = [r["_rescued_data"] and json.loads(r["_rescued_data"]) for r in fast]
    for r in rescued:
        if r:
            assert r.pop("_file_path") == str(tmp_path / "part.json")
    if not rescue_unknown:
        assert rescued == [None] * 4
        return
    assert [r and list(r) for r in rescued] == [  # document order, empty values ([], {}, {"k": null}) left out
        ["t", "meta", "tags"], ["t", "items[0].o"], ["t", "items[1].o"], ["t"]]
    assert fast[0]["_rescued_data"].startswith('{"t":2,"meta":{"k":1,"z":null,"e":{}},"tags":["a",null],')
    assert fast[1]["_rescued_data"].startswith('{"t":2.0,"items[0].o":{"p":[1.5]}')
    assert [r["t"] for r in rescued] == [2, 2.0, 0.1, -1e300]
    assert [[i and i["v"] for i in r["items"] or []] for r in fast] == [[1], [2, 3], [None, 4], []]


def test_values_that_never_fit_inside_arrays_are_rescued_by_element(tmp_path, monkeypatch):
    fast, slow, walked = _typed(tmp_path, _schema(BASE), to_ndjson(CONFLICT_IN_ARRAYS), True, monkeypatch)
    assert walked == 0
    assert fast == slow
    assert [r["_rescued_data"] and json.loads(r["_rescued_data"]) for r in fast] == [
        {"items[0].v": "text", "items[1].v": "more", "_file_path": str(tmp_path / "part.json")}, None,
        {"items[1].v": "x", "_file_path": str(tmp_path / "part.json")}]
    assert [r["items"] for r in fast] == [[{"v": None}, {"v": None}], [{"v": 2}], [None, {"v": None}]]
