"""Named points in the ingestion path where tests kill or slow the process, to prove that a
crash anywhere is followed by a correct rerun. Inert unless the environment asks:
LAKE_CRASH_AT=<point> sends SIGKILL to this process at that point; LAKE_FAIL_AT=<point>[:<text>]
raises InjectedFault there (an error the run survives, unlike a kill), with <text> only in a batch
holding a file whose URI contains it; LAKE_RANDOM_DELAY_MS=<n> sleeps up to n ms at every point."""

from __future__ import annotations

import os
import random
import signal
import time

from lake_assets.errors import LakeError

POINTS = ("listed", "claimed", "scanned", "schema_recorded", "table_evolved", "quarantine_written",
          "bronze_written", "committed")


class InjectedFault(LakeError, RuntimeError):
    """Raised at the point LAKE_FAIL_AT names."""


def checkpoint(point: str, files: list[str] = ()) -> None:
    delay = os.environ.get("LAKE_RANDOM_DELAY_MS")
    if delay:
        time.sleep(random.random() * int(delay) / 1000)
    if os.environ.get("LAKE_CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    at, _, text = os.environ.get("LAKE_FAIL_AT", "").partition(":")
    if at == point and (not text or any(text in f for f in files)):
        raise InjectedFault(f"fault injected at {point} (LAKE_FAIL_AT)")
