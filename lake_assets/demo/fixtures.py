"""`python -m lake_assets.demo.fixtures DIR [DAYS]`: a local lake (config + landing files) with
DAYS days of demo telemetry starting 2026-11-01, for running the asset checks in CI. Day 3 of the
demo data flips a field's type in about one record in eight, which the rescued-data check flags."""

import datetime as dt
import sys
from pathlib import Path

from lake_assets.demo.data import land_demo_data

START = dt.date(2026, 11, 1)

CONFIG = """\
landing: landing
warehouse: warehouse
sources:
  telemetry:
    path: telemetry/
    start_date: {start}
    schema_hints: "event_id STRING, recorded_at TIMESTAMP"
"""


def write_fixture_lake(folder: Path, days: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lake.yaml").write_text(CONFIG.format(start=START.isoformat()))
    land_demo_data(str(folder / "landing"), START, days=days, records_per_day=100)
    return [(START + dt.timedelta(days=i)).isoformat() for i in range(days)]


if __name__ == "__main__":
    print(" ".join(write_fixture_lake(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2)))
