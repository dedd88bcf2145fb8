"""LocalS3 (a moto server) plus the demo data: land it, list it, read it back."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import urllib.error
import urllib.request

import orjson
import pytest

from lake_assets import storage
from lake_assets.demo import data
from lake_assets.localstack import LocalS3

START = dt.date(2026, 11, 18)
DAYS = 3
PER_DAY = 40


@pytest.fixture(scope="module")
def landed(local_s3):
    """Demo data in a fresh bucket of the session's local S3 (conftest's local_s3)."""
    bucket = f"landing-{START:%Y%m%d}-localstack"
    local_s3.create_buckets(bucket)
    return data.land_demo_data(f"s3://{bucket}", START, days=DAYS, records_per_day=PER_DAY)


def _parse(lines: list[bytes]) -> tuple[list[dict], list[bytes]]:
    good, bad = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(line)
            continue
        (good if isinstance(value, dict) else bad).append(value if isinstance(value, dict) else line)
    return good, bad


def test_a_second_server_starts_answers_and_stops():
    """Not applied to the environment: the session's server (conftest) stays the one in use."""
    server = LocalS3()
    with server:
        env = server.env()
        assert server.endpoint.startswith("http://127.0.0.1:") and env["AWS_ENDPOINT_URL"] == server.endpoint
        assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "test"
        assert env["AWS_ALLOW_HTTP"] == "true" and env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
        with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=5) as resp:
            assert resp.status == 200
        server.create_buckets("alpha-bucket", "s3://beta-bucket/some/prefix")
        server.create_buckets("alpha-bucket")  # idempotent
        names = {b["Name"] for b in server.client().list_buckets()["Buckets"]}
        assert names == {"alpha-bucket", "beta-bucket"}
        proc = server._proc
    assert proc.poll() is not None and not server.running
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=2)


def test_session_server_is_the_environment(local_s3):
    for key, value in local_s3.env().items():
        assert os.environ[key] == value


def test_landed_files_listed_back(landed):
    bucket = landed[0].split("/")[2]
    listed = list(storage.list_files(f"s3://{bucket}/telemetry/"))
    assert [f.uri for f in listed] == sorted(landed)
    assert len(listed) == DAYS * data.FILES_PER_DAY
    keys = {f.uri.removeprefix(f"s3://{bucket}/") for f in listed}
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        for part in ("part-000.json", "part-001.json", "part-002.json", "part-003.json.gz"):
            assert f"telemetry/{day:%Y/%m/%d}/{part}" in keys
    assert all(f.size > 0 and f.etag for f in listed)


def test_gz_reads_back_and_damage_is_there(landed):
    gz = [u for u in landed if u.endswith(".gz")]
    assert len(gz) == DAYS
    raw = storage.read_bytes(gz[0])
    assert raw[:2] == b"\x1f\x8b"
    lines = storage.read_text_lines(gz[0])
    assert lines == gzip.decompress(raw).split(b"\n")
    good, bad = _parse(lines)
    assert good and bad == [b'"sensor reboot"']

    all_ids = []
    for i in range(DAYS):
        day_files = landed[i * data.FILES_PER_DAY:(i + 1) * data.FILES_PER_DAY]
        records, malformed = [], []
        for uri in day_files:
            good, bad = _parse(storage.read_text_lines(uri))
            records += good
            malformed += bad
        assert len(malformed) == data.MALFORMED_PER_DAY
        duplicates = data.DUPLICATES_PER_DAY if i else 0
        assert len(records) == PER_DAY + duplicates
        all_ids += [r["event_id"] for r in records]
        assert all(r["recorded_at"].endswith("Z") for r in records)
    # Unique event ids, except the documented re-sends of the previous day's last records.
    assert len(all_ids) - len(set(all_ids)) == (DAYS - 1) * data.DUPLICATES_PER_DAY


def test_drift_by_day(landed):
    by_day, seen = [], set()
    for i in range(DAYS):
        records = []
        for uri in landed[i * data.FILES_PER_DAY:(i + 1) * data.FILES_PER_DAY]:
            records += _parse(storage.read_text_lines(uri))[0]
        fresh = [r for r in records if r["event_id"] not in seen]  # without the re-sent duplicates
        seen |= {r["event_id"] for r in records}
        assert len(fresh) == PER_DAY
        by_day.append(fresh)
    day1, day2, day3 = by_day
    assert not any("battery_pct" in r or "unit" in r["signals"][0] for r in day1)
    assert all("battery_pct" in r and all("unit" in s for s in r["signals"]) for r in day2)
    assert not any("patch" in r["device"]["fw"] for r in day1 + day2)
    assert all("patch" in r["device"]["fw"] for r in day3)
    assert any(isinstance(r["device"]["fw"]["minor"], str) for r in day3)
    assert any(isinstance(r["device"]["fw"]["minor"], int) for r in day3)


def test_deterministic(tmp_path):
    a = data.land_demo_data(str(tmp_path / "a"), START, days=2, records_per_day=10, seed=3)
    b = data.land_demo_data(str(tmp_path / "b"), START, days=2, records_per_day=10, seed=3)
    assert [storage.read_bytes(x) for x in a] == [storage.read_bytes(y) for y in b]
    c = data.land_demo_data(str(tmp_path / "c"), START, days=2, records_per_day=10, seed=4)
    assert storage.read_bytes(a[0]) != storage.read_bytes(c[0])
