"""One base for every error lake_assets raises (a wrong config, unreachable storage, bad input, and
the internal signals between its own functions), and the one place that recognises the engine's
and the storage libraries' own errors by their text, so the CLI and Dagster answer with one line
instead of a traceback."""

from __future__ import annotations

import os
import re


class LakeError(Exception):
    """An error whose message says what went wrong and what to do: the CLI prints it and exits with
    `exit_code`; a Dagster step fails with it as the Failure's description and `facts()` as metadata."""

    exit_code = 2

    def facts(self) -> dict:
        """JSON-able details for the Dagster Failure's metadata."""
        return {}


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL") or "the AWS default endpoint"


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " …"


# The last: delta-rs, finding no credentials, asked the instance metadata service (169.254.169.254).
_NO_CREDENTIALS = re.compile(r"IMDS is disabled|no credentials|NoCredentials|could not load credentials|"
                             r"missing credentials|169\.254\.169\.254", re.IGNORECASE)
_UNREACHABLE = re.compile(r"Connection refused|error trying to connect|dns error|tcp connect error|"
                          r"failed to connect|Could not connect to the endpoint", re.IGNORECASE)
LIBRARIES = ("pyspark", "botocore", "boto3", "deltalake", "grpc")


def _raised_in(exc: BaseException) -> str:
    """The module of the innermost Python frame the exception passed through."""
    tb, module = exc.__traceback__, ""
    while tb is not None:
        module, tb = tb.tb_frame.f_globals.get("__name__", ""), tb.tb_next
    return module


def outside_error(exc: BaseException) -> str | None:
    """A one-line message for an error raised inside the engine (Spark Connect), boto3 or delta-rs
    when they reach storage; None for anything else (a bug, which keeps its traceback)."""
    module = type(exc).__module__ or ""
    if isinstance(exc, OSError) and module == "builtins":  # delta-rs raises plain OSErrors: where from?
        module = _raised_in(exc)
    if not module.startswith(LIBRARIES):
        return None
    text = str(exc)
    if _NO_CREDENTIALS.search(text) or type(exc).__name__ == "NoCredentialsError":
        return ("no AWS credentials to reach the lake's S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(any value works for a local S3 server)")
    if _UNREACHABLE.search(text):
        return f"cannot reach S3 at {_endpoint()}: is the server running? (set AWS_ENDPOINT_URL for a local S3 server)"
    what = "the engine" if module.startswith(("pyspark", "grpc")) else "storage"
    return f"{what} failed: {type(exc).__name__}: {_first_line(exc)}"


# The engines (Sail, Spark, Databricks) and delta-rs raise different classes for the same thing:
# their message is the contract.
_COMMIT_CONFLICT = ("Failed to commit transaction", "ConcurrentAppend", "ConcurrentModification", "ConcurrentDelete",
                    "ProtocolChanged", "MetadataChanged", "DELTA_CONCURRENT")
_NO_TABLE = ("No commit files", "is not a Delta table", "DELTA_MISSING_DELTA_TABLE", "Path does not exist",
             "PATH_NOT_FOUND", "not found")


def is_commit_conflict(exc: BaseException) -> bool:
    """A Delta commit lost to a concurrent one (retrying it is safe)."""
    return any(s in str(exc) for s in _COMMIT_CONFLICT)


def is_missing_table(exc: BaseException) -> bool:
    """A read of a path that holds no Delta table (yet)."""
    return any(s in str(exc) for s in _NO_TABLE)
