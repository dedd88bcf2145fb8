"""The runtime wheel: what `pip install lake_assets` pulls onto a cluster (no Spark, no local stack,
ranges only), what the `local` extra adds, and that the wheel installs and carries its files."""

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCAL_STACK = {"pysail", "moto", "dagster-webserver"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                   check=True, cwd=out)
    return next(out.glob("lake_assets-*.whl"))


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(whl.read(meta).decode())
    return [Requirement(r) for r in message.get_all("Requires-Dist")]


def base(reqs: list[Requirement]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in reqs if r.marker is None}


def extra(reqs: list[Requirement], name: str) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": name})}


@pytest.mark.slow
def test_runtime_requirements_leave_the_cluster_its_spark_and_pyarrow(wheel):
    reqs = requirements(wheel)
    runtime = base(reqs)
    assert not LOCAL_STACK & runtime.keys() and "pyspark" not in runtime and "dagster" not in runtime
    assert "dagster-pipes" in runtime  # the job-side entry point
    pinned = [str(r) for r in runtime.values() if any(s.operator == "==" for s in r.specifier)]
    assert pinned == [], pinned
    assert runtime["pyarrow"].specifier.contains("15.0.0") and runtime["pyarrow"].specifier.contains("19.0.1")
    local = extra(reqs, "local")
    assert LOCAL_STACK <= local.keys() and "lake-assets" in local  # lake_assets[dagster] + the stack
    assert {"dagster", "dagster-databricks", "pyspark"} <= extra(reqs, "dagster").keys()


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_with_its_entry_points(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this checkout
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, env=clean)
    files = subprocess.run([py, "-m", "pip", "show", "-f", "lake_assets"], capture_output=True, text=True,
                           check=True, env=clean, cwd=tmp_path).stdout
    assert "lake_assets/remote.py" in files and "lake_assets/demo/lake.yaml" in files
    assert (venv / "bin" / "lake").exists() and (venv / "bin" / "lake-remote").exists()  # the Databricks task's entry point
    # What pip would still pull: exactly the runtime requirements, nothing of Spark or the local stack.
    missing = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True, env=clean, cwd=tmp_path).stdout
    wanted = {line.split(" requires ")[1].split(",")[0] for line in missing.splitlines() if " requires " in line}
    assert wanted == set(base(requirements(wheel)))
