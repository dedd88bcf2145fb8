"""The Dagster UI in Debian's Chromium, driven by Playwright as a user clicks: a 3-day range
backfill of every asset, launched from the lineage page against a webserver + daemon this test
starts; the bad day is blocked in silver and gold, each day shows its own rows and check results."""

import datetime as dt
import os
import re
import time

import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance

from lake_assets_tests.dagster_server import dagster_running
from lake_assets_tests.scenario_helpers import ndjson

CHROMIUM = "/usr/bin/chromium"
TODAY = dt.datetime.now(dt.timezone.utc).date()
START = TODAY - dt.timedelta(days=10)
DAYS = [(START + dt.timedelta(days=i)).isoformat() for i in (1, 2, 3)]
CONFIG = f"""\
landing: landing
warehouse: warehouse
sources:
  ev: {{path: ev/, start_date: {START.isoformat()}}}
silver:
  evs: {{from: ev, select: [id, n], mode: append}}
gold:
  per_day: {{from: [evs], sql: "SELECT count(*) AS events FROM evs"}}
"""
# One run at a time: the machine this runs on has 2 cores and each run starts its own engine.
DAGSTER_YAML = "concurrency:\n  pools:\n    default_limit: 1\n  runs:\n    max_concurrent_runs: 1\n"
ROWS = {DAYS[0]: [{"id": 1, "n": 1}, {"id": 2, "n": 2}],
        DAYS[1]: [{"id": 3, "n": "three"}, {"id": 4, "n": "four"}, {"id": 5, "n": 5}],   # 2 of 3 rows rescued
        DAYS[2]: [{"id": 6, "n": 6}]}


def _materialization(instance, key, day):
    found = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[day]),
                                            limit=1).records
    return found[0].asset_materialization if found else None


def _metadata_value(text: str, name: str) -> str:
    """A value of the metadata table as the page shows it (name, then the value on a later line)."""
    found = re.search(rf"\n{re.escape(name)}\s*\n\s*(\S[^\n]*)", text)
    assert found, f"{name} not on the page"
    return found.group(1).strip()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is installed by scripts/setup")
def test_range_backfill_clicked_in_the_ui_blocks_only_the_bad_day(tmp_path):
    from playwright.sync_api import sync_playwright

    (tmp_path / "lake.yaml").write_text(CONFIG)
    for day, records in ROWS.items():
        folder = tmp_path / "landing" / "ev" / day.replace("-", "/")
        folder.mkdir(parents=True)
        (folder / "part-0.json").write_bytes(ndjson(records))
    home = tmp_path / "dagster_home"
    with dagster_running(str(tmp_path / "lake.yaml"), home, dagster_yaml=DAGSTER_YAML) \
            as (port, env), sync_playwright() as playwright:
        os.environ["DAGSTER_HOME"] = str(home)
        instance = DagsterInstance.get()
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(120_000)
        base = f"http://127.0.0.1:{port}"
        try:
            page.goto(f"{base}/asset-groups", wait_until="networkidle")
            page.get_by_role("button", name="Skip").click()   # the community dialog of a fresh instance
            page.get_by_role("button", name="Materialize all").click()
            partitions = page.get_by_role("dialog").locator("input:not([type=checkbox])").first
            partitions.click()
            partitions.fill(f"[{DAYS[0]}...{DAYS[2]}]")
            partitions.press("Enter")
            page.get_by_text("3 partitions").wait_for()
            page.get_by_role("button", name="Launch backfill").click()

            # wait for the flow: the backfill run, then automation for gold's published days
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not all(
                    _materialization(instance, ["gold", "per_day"], d) for d in (DAYS[0], DAYS[2])):
                time.sleep(2)

            pages = {}
            for asset in ("bronze/ev", "silver/evs", "gold/per_day"):
                for day in DAYS:
                    page.goto(f"{base}/assets/{asset}?view=partitions&partition={day}", wait_until="networkidle")
                    page.get_by_text("Latest materialization").first.wait_for()
                    time.sleep(1)
                    pages[asset, day] = page.inner_text("body")
                    (tmp_path / f"{asset.replace('/', '_')}_{day}.txt").write_text(pages[asset, day])
            page.goto(f"{base}/assets/bronze/ev?view=checks", wait_until="networkidle")
            time.sleep(2)
            checks_page = page.inner_text("body")
            (tmp_path / "checks.txt").write_text(checks_page)
            page.screenshot(path=str(tmp_path / "checks.png"), full_page=True)
        finally:
            browser.close()

        # from the page: each bronze day its own rows; the bad day's failing figure; silver and gold blocked
        assert [_metadata_value(pages["bronze/ev", d], "rows") for d in DAYS] == ["2", "3", "1"]
        assert "rescued_data_rate ERROR: 66.7 % rows rescued" in pages["bronze/ev", DAYS[1]]
        assert "rescued_data_rate PASS" in pages["bronze/ev", DAYS[0]]
        for asset in ("silver/evs", "gold/per_day"):
            assert "No metadata entries" in pages[asset, DAYS[1]], asset
            assert [_metadata_value(pages[asset, d], "rows") for d in (DAYS[0], DAYS[2])] == \
                (["2", "1"] if asset == "silver/evs" else ["1", "1"])
        assert "rescued_data_rate" in checks_page

        # from the instance: the same, per partition
        assert [_materialization(instance, ["bronze", "ev"], d).metadata["rows"].value for d in DAYS] == [2, 3, 1]
        assert _materialization(instance, ["silver", "evs"], DAYS[1]) is None
        assert _materialization(instance, ["gold", "per_day"], DAYS[1]) is None
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey(["bronze", "ev"]), "rescued_data_rate"), limit=10)
        by_day = {r.event.dagster_event.event_specific_data.partition: r.event.dagster_event.event_specific_data
                  for r in reversed(history)}
        assert [by_day[d].passed for d in DAYS] == [True, False, True]
