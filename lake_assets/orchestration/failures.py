"""The one place where the Dagster layer turns a LakeError into a step `Failure`: its message as
the description (no traceback: the message says what to do) and its facts as metadata."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Failure, MetadataValue

from lake_assets.errors import LakeError


@contextmanager
def as_failure(prefix: str = "") -> Iterator[None]:
    try:
        yield
    except LakeError as exc:
        raise Failure(description=prefix + str(exc),
                      metadata={k: MetadataValue.json(v) for k, v in exc.facts().items()}) from None
