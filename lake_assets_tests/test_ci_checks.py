"""The documented CI command for asset checks (`bash scripts/ci-checks`) passes on clean fixture
data and exits non-zero when a check fails with ERROR."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(days: int):
    return subprocess.run(["bash", "scripts/ci-checks", str(days)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_ci_checks_pass_on_clean_fixture_data():
    out = _run(2)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "all checks passed or warned" in out.stdout


@pytest.mark.slow
def test_ci_checks_fail_on_an_error_check():
    out = _run(3)  # day 3 flips device.fw.minor to a string in about 1 record in 8: rescued rate > 10 %
    assert out.returncode != 0
    assert "blocking check(s) failed with ERROR severity" in out.stdout + out.stderr
    assert "rescued_data_rate ERROR: 1" in out.stdout + out.stderr and "rows rescued" in out.stdout + out.stderr
