"""The error contract: every exception class of lake_assets derives from LakeError; the engines'
errors are recognised by their text in lake_assets.errors alone; the CLI exits with the class's
code and prints the message; the Dagster layer fails a step with the message and the facts."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import dagster as dg
import pytest

import lake_assets
from lake_assets import cli
from lake_assets.errors import LakeError, is_commit_conflict, is_missing_table
from lake_assets.orchestration.failures import as_failure


def _modules():
    for info in pkgutil.walk_packages(lake_assets.__path__, "lake_assets."):
        if info.name.endswith(("__main__", ".definitions", ".spark_daemon")):  # load a lake / run a daemon
            continue
        yield importlib.import_module(info.name)


def test_every_exception_class_derives_from_lake_error():
    classes = {f"{m.__name__}.{name}": cls for m in _modules() for name, cls in inspect.getmembers(m, inspect.isclass)
               if cls.__module__ == m.__name__ and issubclass(cls, BaseException)}
    assert len(classes) >= 20   # storage, config, engine, core, remote …: all of them were found
    assert [name for name, cls in classes.items() if not issubclass(cls, LakeError)] == []


@pytest.mark.parametrize("text, conflict, missing", [
    # Sail (delta-rs), Spark (Delta Lake JVM), Databricks: the same events, different classes and words.
    ("Transaction failed: Failed to commit transaction: version 3 already exists", True, False),
    ("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to partition", True, False),
    ("io.delta.exceptions.ConcurrentDeleteReadException: This transaction attempted to read", True, False),
    ("ProtocolChangedException: The protocol version of the Delta table has been changed", True, False),
    ("MetadataChangedException: The metadata of the Delta table has been changed", True, False),
    ("No commit files found in the log", False, True),
    ("`s3://w/bronze/ev` is not a Delta table.", False, True),
    ("[DELTA_MISSING_DELTA_TABLE] `delta`.`/w/silver/x` is not a Delta table.", False, True),
    ("[PATH_NOT_FOUND] Path does not exist: file:/w/gold/g.", False, True),
    ("[UNRESOLVED_COLUMN] A column with name `x` cannot be resolved", False, False),
    ("Connection refused", False, False),
])
def test_engine_errors_are_recognised_by_their_text(text, conflict, missing):
    assert (is_commit_conflict(RuntimeError(text)), is_missing_table(RuntimeError(text))) == (conflict, missing)


class _Facts(LakeError):
    exit_code = 3

    def facts(self) -> dict:
        return {"new_fields": ["a.b"], "files": ["s3://l/x.json"]}


def test_a_lake_error_fails_the_step_with_its_message_and_facts():
    with pytest.raises(dg.Failure) as failed, as_failure("source 'ev': "):
        raise _Facts("2 new field(s)")
    assert failed.value.description == "source 'ev': 2 new field(s)"
    assert {k: v.value for k, v in failed.value.metadata.items()} == {"new_fields": ["a.b"], "files": ["s3://l/x.json"]}
    with pytest.raises(ZeroDivisionError), as_failure():   # a bug keeps its traceback
        1 / 0


def test_the_cli_exits_with_the_code_of_the_error_class(monkeypatch, capsys):
    def fails(args, lake):
        raise _Facts("what went wrong; what to do\nsecond line")

    monkeypatch.delenv("LAKE_CONFIG", raising=False)   # the bundled demo config: `lake demo` reads no lake
    monkeypatch.setattr(cli, "cmd_demo", fails)
    assert cli.main(["demo"]) == 3
    assert capsys.readouterr().err.splitlines() == ["lake demo: what went wrong; what to do", "lake demo: second line"]
