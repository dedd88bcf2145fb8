"""benchmarks/write_costs.py: the audit columns it adds are bronze's, and it runs end to end on Sail."""

import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import write_costs  # noqa: E402


def test_with_audit_adds_bronzes_per_row_columns():
    from lake_assets.core.layout import LANDING_DATE, LINE, RECORD, SOURCE_FILE

    table = write_costs.with_audit(pa.table({"a": [1, 2, 3]}), "s3://b/k.json")
    assert {SOURCE_FILE, LINE, RECORD, LANDING_DATE} <= set(table.column_names)
    assert table.column(SOURCE_FILE).to_pylist() == ["s3://b/k.json"] * 3
    assert table.column(LINE).to_pylist() == [1, 2, 3] and table.column("a").to_pylist() == [1, 2, 3]


def test_the_benchmark_runs_end_to_end(capsys):
    assert write_costs.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    for row in ("handover", "write (-> Delta)", "+ audit columns", "+ partitioned by _landing_date", "raw parse",
                "raw (read.json -> Delta)"):
        line = next(line for line in printed.splitlines() if line.startswith(row))
        assert float(line.split()[-3]) >= 0   # CPU s, wall s and the ratio are numbers
