"""benchmarks/json_parsers.py: its conformance check reads what each parser really makes of the
cases (pyarrow's findings asserted here), and the benchmark runs end to end."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import json_parsers  # noqa: E402


def verdicts(read, schema_given: bool) -> dict:
    return {r["case"]: (r["verdict"], r["out"]) for r in json_parsers.conformance(read, schema_given)}


def test_judge_compares_values_and_their_json_types():
    assert json_parsers.judge(b'{"a":5.5}', [{"a": 5}]) == ("lenient", "5.5->5")
    assert json_parsers.judge(b'{"a":"7"}', [{"a": 7}]) == ("lenient", '"7"->7')
    assert json_parsers.judge(b'{"a":1,"b":2}', [{"a": 1}]) == ("lenient", "unknown field b dropped")
    assert json_parsers.judge(b'{"a":18446744073709551616}', [{"a": float(2**64)}])[0] == "lenient"
    assert json_parsers.judge(b'{"a":1}{"a":2}', [{"a": 1}, {"a": 2}])[0] == "lenient"
    assert json_parsers.judge(b'{"a":5.5}', [{"a": 5.5}]) == ("exact", '{\'a\': 5.5}')
    assert json_parsers.judge(b'{"a":5.5}', ValueError("no"))[0] == "rejected"


def test_pyarrow_with_a_schema_and_error_rejects_all_but_two_objects_on_a_line():
    import pyarrow as pa

    parsers = json_parsers.pyarrow_parsers(pa.schema([("a", pa.int64())]))
    _, read, schema_given = parsers["pyarrow.json, schema+error"]
    found = verdicts(read, schema_given)
    for case in ("5.5 into BIGINT", '"7" into BIGINT', "5 into STRING", "unknown field b",
                 "1700000000 into TIMESTAMP", "integer past 64 bits"):
        assert found[case][0] == "rejected", (case, found[case])
    assert "couldn't parse:5.5" in found["5.5 into BIGINT"][1]
    assert "unexpected field" in found["unknown field b"][1]
    # pyarrow's reader takes whitespace-free concatenated objects as two records, schema or not
    assert found["two objects on one line"] == ("lenient", "2 records: {'a': 1} {'a': 2}")


def test_pyarrow_inferring_keeps_values_but_rounds_long_integers_and_the_scan_catches_both():
    import pyarrow as pa

    parsers = json_parsers.pyarrow_parsers(pa.schema([("a", pa.int64())]))
    inferred = verdicts(*parsers["pyarrow.json (arrow_read)"][1:])
    assert inferred["5.5 into BIGINT"] == ("exact", "{'a': 5.5}")  # a double column: the caller types it
    assert inferred["integer past 64 bits"] == ("lenient", "18446744073709551616->1.8446744073709552e+19")
    assert inferred["two objects on one line"][0] == "lenient"
    scan = verdicts(*parsers["pyarrow_scan.scan_bytes"][1:])
    assert scan["integer past 64 bits"] == ("exact", "{'a': 18446744073709551616}")  # the Python walk
    assert scan["two objects on one line"][0] == "rejected"  # a malformed line
    assert {v for case, (v, _) in scan.items() if case != "two objects on one line"} == {"exact"}


def test_orjson_rejects_two_objects_and_rounds_long_integers():
    _, read, schema_given = json_parsers.orjson_parser()["orjson.loads per line"]
    found = verdicts(read, schema_given)
    assert found["two objects on one line"][0] == "rejected"
    assert found["integer past 64 bits"][0] == "lenient"


def test_the_benchmark_runs_end_to_end(tmp_path):
    start = time.perf_counter()
    assert json_parsers.main(["--quick", "--dir", str(tmp_path / "work"), "--json", str(tmp_path / "r.json")]) == 0
    assert time.perf_counter() - start < 30
    result = json.loads((tmp_path / "r.json").read_text())
    rows = {r["parser"]: r for r in result["rows"]}
    assert {"pyarrow.json (arrow_read)", "pyarrow_scan.scan_bytes", "pyarrow.json, schema+error",
            "orjson.loads per line", "Sail read.json, schema -> noop"} <= set(rows)
    for row in rows.values():
        assert row["mb_per_cpu_s"] > 0
        assert row["records"] in (None, result["records"]), row["parser"]
    assert rows["pyarrow.json (arrow_read)"]["ratio"] == pytest.approx(1.0)
    assert "lenient" in rows["Sail read.json, schema -> noop"]["exact_strict"]
    assert set(result["agreement"].values()) == {"same"}
