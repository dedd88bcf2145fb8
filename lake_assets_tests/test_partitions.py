import datetime as dt

import pytest

from lake_assets.core.partitions import landing_date

MODIFIED = dt.datetime(2026, 3, 4, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # 2026-03-05 01:30 UTC


@pytest.mark.parametrize("key, expected", [
    ("telemetry/2026/11/20/part-000.json", "2026-11-20"),
    ("telemetry/dt=2026-11-20/part-000.json.gz", "2026-11-20"),
    ("telemetry/date=2026-11-20/x.json", "2026-11-20"),
    ("telemetry/year=2026/month=11/day=20/x.json", "2026-11-20"),
    ("telemetry/2026-11-20/x.json", "2026-11-20"),
    ("2026/11/20/x.json", "2026-11-20"),
    ("telemetry/device-7/x.json", "2026-03-05"),                 # no date: last-modified, in UTC
    ("telemetry/2026/13/45/x.json", "2026-03-05"),               # not a real date
    ("telemetry/build-20261120/x.json", "2026-03-05"),           # digits inside a name are not a date
])
def test_landing_date_from_key_else_last_modified_utc(key, expected):
    assert landing_date(key, MODIFIED).isoformat() == expected
