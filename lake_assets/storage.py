"""The one place that reaches files: `s3://bucket/key` through boto3 (standard AWS environment,
so a local S3 server works unchanged) and local paths. Errors become StorageError with what,
where and what to do."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lake_assets.errors import LakeError

_local = threading.local()


class StorageError(LakeError, RuntimeError):
    """A storage call failed; the message says what, where and what to do."""


# The reason a damaged file fails with: it travels as text (ledger, scan rows), so on_corrupt
# recognizes corrupt files by it.
CORRUPT = "is not a readable gzip file"


class FileChanged(StorageError):
    """The object changed or vanished between listing and reading."""


@dataclass(frozen=True)
class FileInfo:
    uri: str
    size: int
    etag: str
    last_modified: dt.datetime  # UTC


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key` (or s3a://). The one URI parser: the key is taken verbatim,
    never URL-parsed or percent-decoded, because S3 keys may hold `?`, `#`, `%`, `+`, spaces and any
    unicode (urlparse would cut the key at `?` or `#`)."""
    _, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    return bucket, key


def _local_path(uri: str) -> Path:
    """A local path, or a `file://` URI taken verbatim (no percent-decoding, as for S3 keys)."""
    return Path(uri.removeprefix("file://"))


def s3_client():
    """A boto3 S3 client per thread, retrying 5xx and throttling with backoff."""
    client = getattr(_local, "s3", None)
    if client is None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5,
                          read_timeout=120),
        )
        _local.s3 = client
    return client


def _explain(exc: Exception, uri: str, action: str) -> StorageError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    bucket, _ = split_uri(uri)
    if isinstance(exc, EndpointConnectionError):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "the AWS default endpoint")
        return StorageError(f"cannot reach S3 at {endpoint} to {action} {uri}: is the server running? "
                            f"(set AWS_ENDPOINT_URL for a local S3 server)")
    if isinstance(exc, NoCredentialsError):
        return StorageError(f"no AWS credentials to {action} {uri}: set AWS_ACCESS_KEY_ID and "
                            f"AWS_SECRET_ACCESS_KEY (any value works for a local S3 server)")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return StorageError(f"bucket {bucket!r} does not exist ({action} {uri}): create it or fix "
                                f"the path in the lake config")
        if code in ("NoSuchKey", "404"):
            return FileChanged(f"{uri} no longer exists ({action})")
        if code in ("PreconditionFailed", "412"):
            return FileChanged(f"{uri} changed since it was listed ({action})")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(f"access denied to {action} {uri} ({code}): check the AWS credentials")
        return StorageError(f"S3 error {code} to {action} {uri}: {exc}")
    return StorageError(f"cannot {action} {uri}: {exc}")


def list_files(prefix_uri: str, start_after: str | None = None) -> Iterator[FileInfo]:
    """Every file under a prefix, in key order (S3 lexical order; local sorted paths)."""
    if is_s3(prefix_uri):
        bucket, prefix = split_uri(prefix_uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = split_uri(start_after)[1]
        try:
            for page in s3_client().get_paginator("list_objects_v2").paginate(**kwargs):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):
                        continue
                    yield FileInfo(f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"].strip('"'),
                                   obj["LastModified"].astimezone(dt.timezone.utc))
        except Exception as exc:
            raise _explain(exc, prefix_uri, "list") from exc
        return
    root = _local_path(prefix_uri)
    if not root.exists():
        raise StorageError(f"landing folder {root} does not exist: create it or fix the path in the lake config")
    for path, st in _walk(str(root), start_after or ""):
        yield FileInfo(path, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}",
                       dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc))


def _walk(folder: str, start_after: str) -> Iterator[tuple[str, os.stat_result]]:
    """The files under `folder` after `start_after`, lazily and in the order of their path strings (as
    S3 orders keys): a folder sorts as its name + "/", and one wholly before `start_after` is not entered,
    so a listing costs what it returns, not the whole tree."""
    entries = []
    with os.scandir(folder) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):   # as rglob: a linked folder is not entered
                entries.append((e.name + "/", e.path))
            elif e.is_file() and not e.name.startswith("."):
                entries.append((e.name, e.path))
    for name, path in sorted(entries):
        if name.endswith("/"):
            if path + "/" < start_after and not start_after.startswith(path + "/"):
                continue
            yield from _walk(path, start_after)
        elif path > start_after:
            yield path, os.stat(path)


def read_bytes(uri: str, etag: str | None = None) -> bytes:
    """The object's bytes; with `etag`, FileChanged if it is no longer that version."""
    if is_s3(uri):
        bucket, key = split_uri(uri)
        kwargs = {"Bucket": bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = etag
        try:
            return s3_client().get_object(**kwargs)["Body"].read()
        except Exception as exc:
            raise _explain(exc, uri, "read") from exc
    path = _local_path(uri)
    try:
        if etag:
            st = path.stat()
            if f"{st.st_mtime_ns:x}-{st.st_size:x}" != etag:
                raise FileChanged(f"{uri} changed since it was listed (read)")
        return path.read_bytes()
    except FileNotFoundError:
        raise FileChanged(f"{uri} no longer exists (read)") from None
    except OSError as exc:
        raise StorageError(f"cannot read {uri}: {exc.strerror}") from None


def read_data(uri: str, etag: str | None = None, salvage: bool = False) -> bytes:
    """The file's content, gunzipped when it is gzip (by content, not by name). A gzip that is
    truncated or corrupt raises StorageError, or with `salvage` gives what decompresses before
    the damage (see salvaged_data for what was lost)."""
    return salvaged_data(uri, etag)[0] if salvage else _gunzipped(uri, read_bytes(uri, etag))


def salvaged_data(uri: str, etag: str | None = None) -> tuple[bytes, str | None]:
    """(the readable content, None) or, for a damaged gzip, (what decompresses before the damage,
    what was lost). The last line of a cut stream is cut too: it reads as a malformed line."""
    data = read_bytes(uri, etag)
    if data[:2] != b"\x1f\x8b":
        return data, None
    try:
        return _gunzipped(uri, data), None
    except StorageError as exc:
        out, pos = [], 0
        while pos < len(data):   # member by member, 64 KiB at a time, keeping the output so far
            member = zlib.decompressobj(wbits=31)
            try:
                for start in range(pos, len(data), 1 << 16):
                    out.append(member.decompress(data[start:start + (1 << 16)]))
                    if member.eof:
                        break
            except zlib.error:
                break
            if not member.eof:
                break
            pos = len(data) - len(member.unused_data)
            if member.unused_data[:2] != b"\x1f\x8b":
                break
        text = b"".join(out)
        return text, (f"salvaged: {exc}; loaded the {len(text)} byte(s) that decompress before the damage (a "
                      f"record they end in the middle of is quarantined), the rest of the file is lost")


def _gunzipped(uri: str, data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise StorageError(f"{uri} {CORRUPT}: {exc}") from None
    return data


def read_text_lines(uri: str, etag: str | None = None) -> list[bytes]:
    """The file's lines (see read_data)."""
    return read_data(uri, etag).split(b"\n")


def write_bytes(uri: str, data: bytes, *, only_if_new: bool = False) -> bool:
    """Write an object; with `only_if_new`, return False instead of replacing an existing one."""
    if is_s3(uri):
        bucket, key = split_uri(uri)
        kwargs = {"Bucket": bucket, "Key": key, "Body": data}
        if only_if_new:
            kwargs["IfNoneMatch"] = "*"
        try:
            s3_client().put_object(**kwargs)
            return True
        except Exception as exc:
            err = _explain(exc, uri, "write")
            if only_if_new and isinstance(err, FileChanged):
                return False
            raise err from exc
    path = _local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    if only_if_new:
        try:
            with open(path, "xb") as fh:
                fh.write(data)
            return True
        except FileExistsError:
            return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_uri(uri)
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            err = _explain(exc, uri, "check")
            if isinstance(err, FileChanged):
                return False
            raise err from exc
    return _local_path(uri).exists()


def delete(uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_uri(uri)
        try:
            s3_client().delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise _explain(exc, uri, "delete") from exc
        return
    _local_path(uri).unlink(missing_ok=True)


def move(uri: str, to: str) -> None:
    """Copy then delete (S3: a server-side copy, which keeps a single-part object's ETag; local: a
    rename, which keeps the time the ETag is made of). A crash between the two leaves both, and
    moving again finishes it."""
    if is_s3(uri) and is_s3(to):
        (bucket, key), (to_bucket, to_key) = split_uri(uri), split_uri(to)
        try:
            s3_client().copy_object(Bucket=to_bucket, Key=to_key, CopySource={"Bucket": bucket, "Key": key})
        except Exception as exc:
            raise _explain(exc, uri, "copy") from exc
        delete(uri)
        return
    if is_s3(uri) or is_s3(to):
        write_bytes(to, read_bytes(uri))
        delete(uri)
        return
    target = _local_path(to)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_local_path(uri), target)


def check_bucket(uri: str, what: str) -> None:
    """Fail early, with one clear message, if the bucket or folder behind `uri` is missing."""
    if is_s3(uri):
        bucket, _ = split_uri(uri)
        try:
            s3_client().head_bucket(Bucket=bucket)
        except Exception as exc:
            from botocore.exceptions import ClientError
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise StorageError(f"{what} bucket {bucket!r} does not exist ({uri}): create it or fix "
                                   f"the lake config") from None
            raise _explain(exc, uri, f"open the {what}") from exc
