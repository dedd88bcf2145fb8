"""Demo landing data: device telemetry as NDJSON, with the drift and damage real producers ship.

`land_demo_data(landing, start, days)` writes, for each day,
`<landing>/telemetry/YYYY/MM/DD/part-000.json … part-002.json` and `part-003.json.gz` (gzip of
NDJSON). Every record:

    {"event_id": "…", "recorded_at": "2026-11-18T08:15:02.123Z",
     "device": {"id": "dev-0007", "model": "TH-200", "fw": {"major": 2, "minor": 7}},
     "signals": [{"name": "temp_c", "value": 21.4, "quality": "good"}, …],
     "site": {"id": "site-03", "geo": {"lat": 52.52, "lon": 13.405}}}

Drift by day number (1 = the first day landed; later days keep the latest shape):
- day 2 adds the top-level field `battery_pct` (integer) and `unit` inside every `signals` element;
- day 3 adds `device.fw.patch` (integer) and, in about one record in eight, sends
  `device.fw.minor` as a string such as "7-beta" (a type conflict with the integer column).

Damage: every day has MALFORMED_PER_DAY (3) malformed lines: a truncated record in part-000, a
JSON array in part-001, and a bare JSON string inside the .gz file.

Duplicates (for dedup tests): from day 2 on, the .gz file of each day re-sends the last
DUPLICATES_PER_DAY (2) records of the previous day unchanged (same event_id, at-least-once
delivery). Otherwise event ids are unique. `records_per_day` counts the new records only.

Everything is deterministic given the seed (the .gz bytes too: the gzip header time is 0).
"""

from __future__ import annotations

import datetime as dt
import gzip
import random
import uuid

import orjson

from lake_assets import storage

SOURCE_PATH = "telemetry"
FILES_PER_DAY = 4               # part-000..002.json and part-003.json.gz
MALFORMED_PER_DAY = 3
DUPLICATES_PER_DAY = 2          # from day 2 on, in the .gz file

_MODELS = [("TH-100", 1), ("TH-200", 2), ("VB-10", 3), ("PX-7", 1)]
_SIGNALS = [("temp_c", "C", 21.0, 4.0), ("humidity", "%", 45.0, 12.0), ("pressure", "hPa", 1013.0, 8.0),
            ("vibration", "mm/s", 2.0, 1.5), ("co2", "ppm", 600.0, 150.0)]
_QUALITY = ["good"] * 8 + ["suspect", "bad"]
_SITES = [("site-01", 52.5200, 13.4050), ("site-02", 48.1371, 11.5754), ("site-03", 53.5511, 9.9937),
          ("site-04", 50.1109, 8.6821), ("site-05", 51.2277, 6.7735), ("site-06", 47.3769, 8.5417)]


def _devices(seed: int, count: int = 40) -> list[dict]:
    rng = random.Random(f"devices-{seed}")
    out = []
    for i in range(count):
        model, major = rng.choice(_MODELS)
        out.append({"id": f"dev-{i:04d}", "model": model, "major": major, "minor": rng.randint(0, 9),
                    "site": rng.choice(_SITES)})
    return out


def generate_records(n: int, seed: int = 7, day: int = 1, date: dt.date | None = None,
                     start: int = 0) -> list[dict]:
    """`n` telemetry records with the shape of drift day `day` (1, 2, 3+), recorded on `date`
    (default 2026-11-17 + day). `start` offsets the stream, so consecutive calls with the same
    seed and day give different records (and event ids). The records depend on seed, day and start
    only, `date` sets just their timestamps: the demo, whose data ends today, shows the same
    figures on every calendar day."""
    date = date or dt.date(2026, 11, 17) + dt.timedelta(days=day)
    rng = random.Random(f"records-{seed}-{day}-{start}")
    devices = _devices(seed)
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc)
    millis = sorted(rng.randrange(86_400_000) for _ in range(n))  # in time order
    records = []
    for i in range(n):
        dev = devices[rng.randrange(len(devices))]
        fw: dict = {"major": dev["major"], "minor": dev["minor"]}
        if day >= 3:
            if rng.random() < 0.125:
                fw["minor"] = f"{dev['minor']}-beta"
            fw["patch"] = rng.randint(0, 20)
        signals = []
        for name, unit, mean, spread in rng.sample(_SIGNALS, rng.randint(1, 4)):
            signal = {"name": name, "value": round(rng.gauss(mean, spread), 3), "quality": rng.choice(_QUALITY)}
            if day >= 2:
                signal["unit"] = unit
            signals.append(signal)
        site_id, lat, lon = dev["site"]
        at = midnight + dt.timedelta(milliseconds=millis[i])
        record = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "recorded_at": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "device": {"id": dev["id"], "model": dev["model"], "fw": fw},
            "signals": signals,
            "site": {"id": site_id, "geo": {"lat": lat, "lon": lon}},
        }
        if day >= 2:
            record["battery_pct"] = rng.randint(5, 100)
        records.append(record)
    return records


def to_ndjson(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def day_prefix(landing_uri: str, date: dt.date) -> str:
    return storage.join(landing_uri, SOURCE_PATH, f"{date:%Y/%m/%d}")


def land_demo_data(landing_uri: str, start: dt.date, days: int = 3, records_per_day: int = 200,
                   seed: int = 7) -> list[str]:
    """Write `days` days of telemetry from `start` under `<landing_uri>/telemetry/YYYY/MM/DD/`
    (s3:// or a local folder); returns the URIs written, in order. See the module docstring for
    the drift, the malformed lines and the duplicates."""
    written = []
    previous: list[dict] = []
    for index in range(days):
        date = start + dt.timedelta(days=index)
        records = generate_records(records_per_day, seed, day=index + 1, date=date)
        parts = [records[i * len(records) // FILES_PER_DAY:(i + 1) * len(records) // FILES_PER_DAY]
                 for i in range(FILES_PER_DAY)]
        bodies = [to_ndjson(part) for part in parts]
        # Damage: a truncated record, a JSON array, a bare string (inside the .gz).
        truncated = orjson.dumps(records[0])[:57] + b"\n"
        bodies[0] = _insert_line(bodies[0], truncated, 1)
        bodies[1] = _insert_line(bodies[1], b"[1, 2, 3]\n", 2)
        resent = previous[-DUPLICATES_PER_DAY:] if previous else []
        bodies[-1] = to_ndjson(resent) + _insert_line(bodies[-1], b'"sensor reboot"\n', 1)
        prefix = day_prefix(landing_uri, date)
        for i, body in enumerate(bodies):
            last = i == FILES_PER_DAY - 1
            uri = storage.join(prefix, f"part-{i:03d}.json" + (".gz" if last else ""))
            storage.write_bytes(uri, gzip.compress(body, mtime=0) if last else body)
            written.append(uri)
        previous = records
    return written


def _insert_line(body: bytes, line: bytes, after: int) -> bytes:
    """`line` after the first `after` lines of `body` (at the end if it has fewer)."""
    lines = body.splitlines(keepends=True)
    return b"".join(lines[:after]) + line + b"".join(lines[after:])
