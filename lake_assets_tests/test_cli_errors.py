"""Every `lake` command answers a dead S3 endpoint, missing credentials, a broken config and an
engine error with one line on stderr and exit 2; "nothing ingested" only from a reachable, empty
warehouse. The CLI's `main` in a fresh process per scenario, with that scenario's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake_assets_tests.scenario_helpers import Lake

ROOT = Path(__file__).parent.parent
DAY = "2026-01-05"
COMMANDS = [
    ["ingest", "telemetry", "--date", DAY],
    ["reprocess", "telemetry", "--from", DAY, "--to", DAY],
    ["status"], ["status", "telemetry", "--json"],
    ["validate"], ["repair", "telemetry"],
    ["reset", "telemetry", "--confirm", "telemetry"],
    ["schema", "show", "telemetry"], ["schema", "history", "telemetry"],
    ["schema", "diff", "telemetry"], ["schema", "accept", "telemetry"],
    ["promote", "telemetry", "device.fw.patch"],
]


# Runs `lake_assets.cli.main(argv)` for each command in one fresh process, each in its own thread
# with its own stdout/stderr, so their waits on S3 retries overlap and Python starts once.
DRIVER = """
import io, json, sys, threading, traceback
from lake_assets.cli import main
local, real_stdout = threading.local(), sys.stdout
class Stream(io.TextIOBase):
    def __init__(self, name): self.name = name
    def write(self, text): return getattr(local, self.name).write(text)
    def isatty(self): return False
sys.stdout, sys.stderr = Stream("out"), Stream("err")
results = {}
def run(argv):
    local.out, local.err = io.StringIO(), io.StringIO()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        local.err.write(traceback.format_exc()); code = "exception"
    results[" ".join(argv[2:])] = (code, local.out.getvalue(), local.err.getvalue())
threads = [threading.Thread(target=run, args=(argv,)) for argv in json.loads(sys.argv[1])]
[t.start() for t in threads]; [t.join() for t in threads]
real_stdout.write(json.dumps(results))
"""


def _run_all(config: str, env: dict, commands=COMMANDS) -> dict[str, subprocess.CompletedProcess]:
    argvs = [["--config", config, *c] for c in commands]
    out = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return {name: subprocess.CompletedProcess(name, code, stdout, stderr)
            for name, (code, stdout, stderr) in json.loads(out.stdout).items()}


def _no_aws_env(tmp_path) -> dict[str, str]:
    """An environment with no AWS settings at all (and no instance metadata service to ask)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}


def _assert_one_line(results: dict, *expected: str) -> None:
    for name, r in results.items():
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, f"lake {name}: rc={r.returncode}\n{r.stderr[-2000:]}"
        assert len(lines) == 1 and "Traceback" not in r.stderr, f"lake {name}:\n{r.stderr[-2000:]}"
        assert lines[0].startswith(f"lake {name.split()[0]}: "), lines[0]
        for text in expected:
            assert text in lines[0], f"lake {name}: {lines[0]}"
        assert r.stdout == "", f"lake {name} printed {r.stdout!r}"


@pytest.fixture
def s3_config(tmp_path, buckets):
    landing, warehouse = buckets
    return str(Lake(tmp_path, warehouse, landing=landing).config)


def test_dead_endpoint_is_one_line_and_exit_2_for_every_command(tmp_path, s3_config, local_s3):
    env = {**_no_aws_env(tmp_path), **local_s3.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    _assert_one_line(_run_all(s3_config, env), "cannot reach S3 at http://127.0.0.1:9", "is the server running?")


def test_missing_credentials_are_one_line_and_exit_2_for_every_command(tmp_path, s3_config, local_s3):
    env = {**_no_aws_env(tmp_path), "AWS_ENDPOINT_URL": local_s3.endpoint, "AWS_REGION": "us-east-1"}
    _assert_one_line(_run_all(s3_config, env), "no AWS credentials", "AWS_ACCESS_KEY_ID")


def test_missing_warehouse_bucket_is_one_line(tmp_path, buckets):
    config = str(Lake(tmp_path, "s3://no-such-lake", landing=buckets[0]).config)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _assert_one_line(_run_all(config, env, COMMANDS[2:4] + COMMANDS[7:9]), "warehouse bucket 'no-such-lake' does not exist")


def test_broken_config_is_every_problem_for_every_command(tmp_path):
    path = tmp_path / "lake.yaml"
    path.write_text("landing: s3://a-landing\nwarehouse: s3://a-lake\nsources:\n"
                    "  telemetry: {path: t/, start_date: 2026-11-31, schema_evolution_mode: sometimes}\n")
    results = _run_all(str(path), {**os.environ, "PYTHONPATH": str(ROOT)}, COMMANDS[:1] + COMMANDS[2:3] + COMMANDS[8:9])
    for name, r in results.items():
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 2, r.stderr      # one line per problem
        assert any(f"{path}: sources.telemetry.start_date: 2026-11-31 is not a valid date" in ln for ln in lines)
        assert any(f"{path}: sources.telemetry.schema_evolution_mode:" in ln for ln in lines)


def test_nothing_ingested_only_from_a_reachable_empty_warehouse(tmp_path, s3_config):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = _run_all(s3_config, env, [["schema", "history", "telemetry"], ["schema", "show", "telemetry"]])
    for r in results.values():
        assert r.returncode == 0 and r.stdout.strip() == \
            "telemetry: no schema yet (the warehouse has nothing ingested for it)", r


def test_engine_errors_are_recognised_in_one_place():
    from lake_assets.engine import spark_session
    from lake_assets.errors import outside_error

    with pytest.raises(Exception) as err:
        spark_session().read.format("delta").load(str(ROOT / "no-such-table")).collect()
    message = outside_error(err.value)
    assert message and message.startswith("the engine failed: ") and "\n" not in message
    assert outside_error(KeyError("a bug")) is None       # anything else keeps its traceback


def test_config_error_through_dagster_is_the_problems_not_a_traceback(tmp_path):
    path = tmp_path / "lake.yaml"
    path.write_text("landing: s3://a-landing\nwarehouse: s3://a-lake\nsources:\n"
                    "  telemetry: {path: t/, start_date: 2026-11-31}\n")
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "lake_assets.definitions"],
                         env={**os.environ, "PYTHONPATH": str(ROOT), "LAKE_CONFIG": str(path)}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"{path}: sources.telemetry.start_date: 2026-11-31 is not a valid date" in out.stderr


@pytest.mark.slow
def test_credentials_from_a_profile_file_reach_every_reader(tmp_path, buckets):
    """boto3, the engine and delta-rs (table versions) all use a ~/.aws-style credentials file."""
    from lake_assets import storage
    from lake_assets.demo.data import generate_records, to_ndjson

    landing, warehouse = buckets
    config = str(Lake(tmp_path, warehouse, landing=landing).config)
    storage.write_bytes(f"{landing}/telemetry/2026/01/05/part-000.json", to_ndjson(generate_records(7)))
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
    env = {**_no_aws_env(tmp_path), "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"], "AWS_REGION": "us-east-1",
           "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
    ingest = subprocess.run([sys.executable, "-m", "lake_assets.cli", "--config", config, "ingest", "telemetry",
                             "--date", DAY], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    status = _run_all(config, env, [["status", "--json", "--all"]])["status --json --all"]
    assert status.returncode == 0, status.stderr
    facts = json.loads(status.stdout)
    assert facts["records"] == 7 and facts["table_version"] is not None


def test_demo_never_replaces_a_folder_that_is_not_a_demo_lake(tmp_path):
    keep = tmp_path / "mine" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("precious")
    out = subprocess.run([sys.executable, "-m", "lake_assets.cli", "demo"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "LAKE_DEMO_HOME": str(keep.parent)}, timeout=120)
    assert out.returncode == 2 and "is not empty and holds no demo lake" in out.stderr, out.stderr[-2000:]
    assert keep.read_text() == "precious" and sorted(keep.parent.iterdir()) == [keep]
