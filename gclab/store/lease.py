"""Per-run claims on object storage: a lease object, since a bucket has no `flock`.

`<prefix>/claims/sweep=<s>/run_id=<id>` is created with `If-None-Match: *`, so of two writers exactly
one creates it. It holds the holder (host, pid), a nonce (every write has its own ETag) and a TTL; a
heartbeat thread rewrites it every TTL/3 with `If-Match` on its ETag. A holder that dies stops
renewing: once the object is older than its TTL by the server's own clock (its `Last-Modified`
against the response's `Date`, so no two machines' clocks are compared), the next writer takes it
over with `If-Match` on the stale ETag, and again exactly one taker wins. Same interface as
`store.claim.Claim`, re-entrant within a process in the same way (README, "Object storage").
"""

from __future__ import annotations

import email.utils
import json
import os
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlparse

from gclab.store.claim import ClaimTaken
from gclab.store.errors import StoreError, one_line
from gclab.store.location import Location

TTL_SECONDS = 60.0  # a killed holder's run waits this long before another collector takes it
CLAIMS_DIR = "claims"
S3_EXTRA = "object storage needs boto3: pip install 'gclab[s3]'"

# This process's leases: (endpoint, bucket, key) → [holding Lease, depth].
_HELD: dict[tuple[str, str, str], list[Any]] = {}
_HELD_LOCK = threading.Lock()


def s3_client(location: Location):
    """A boto3 S3 client for `location` (endpoint from its storage options, keys from the environment)."""
    try:
        import boto3
    except ImportError:
        raise StoreError(S3_EXTRA) from None
    if urlparse(location.uri).scheme not in ("s3", "s3a"):
        raise StoreError(f"--data {location.uri}: object-storage claims are written for s3:// only; use an s3:// URI")
    return boto3.client("s3", endpoint_url=location.storage_options.get("AWS_ENDPOINT_URL"))


def require_bucket(location: Location) -> None:
    """StoreError (one line) unless the object store's bucket exists and answers, before anything is written."""
    bucket = urlparse(location.uri).netloc
    try:
        s3_client(location).head_bucket(Bucket=bucket)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 — botocore's errors, imported lazily
        if _code(exc) in ("404", "NoSuchBucket"):
            msg = f"--data {location.uri}: bucket {bucket} does not exist; create it first or fix --data"
            raise StoreError(msg) from None
        raise _store_error(exc, f"s3://{bucket}") from None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _lost_race(exc: Exception) -> bool:
    """The conditional write lost: someone else created or rewrote the lease first."""
    return _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _store_error(exc: Exception, where: str) -> StoreError:
    if _code(exc) == "NoSuchBucket":
        return StoreError(f"{where}: the bucket does not exist; create it first or fix --data")
    return StoreError(f"cannot reach the claim {where} ({one_line(exc)}); check AWS_ENDPOINT_URL and the keys")


class Lease:
    """Context manager; `held` says whether this process got the run, `lost` that a heartbeat found it taken."""

    def __init__(self, location: Location, sweep: str, run_id: str, *, ttl: float = TTL_SECONDS):
        parsed = urlparse(location.uri)
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.key = "/".join(p for p in (prefix, CLAIMS_DIR, f"sweep={sweep}", f"run_id={run_id}") if p)
        self.location = location
        self.ttl = ttl
        self.held = False
        self._lost = False
        self._owner: Lease = self
        self._client = s3_client(location)
        self._ident = (location.storage_options.get("AWS_ENDPOINT_URL", ""), self.bucket, self.key)
        self._etag = ""
        self._stop = threading.Event()
        self._renewing = threading.Lock()  # the heartbeat and confirm() each renew from the ETag the other wrote
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        holder = f"{socket.gethostname()} {os.getpid()}"
        return json.dumps({"holder": holder, "ttl": self.ttl, "nonce": uuid.uuid4().hex}).encode()

    def _put(self, **condition: str) -> bool:
        """One conditional write of a fresh body; False when the condition failed."""
        try:
            response = self._client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), **condition)
        except Exception as exc:  # noqa: BLE001 — botocore's ClientError, imported lazily
            if _lost_race(exc):
                return False
            raise _store_error(exc, f"s3://{self.bucket}/{self.key}") from None
        self._etag = response["ETag"]
        return True

    def _current(self) -> tuple[str, bool] | None:
        """(ETag, expired by the server's clock) of the lease there now; None when there is none."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise _store_error(exc, f"s3://{self.bucket}/{self.key}") from None
        body = response["Body"].read()
        try:
            ttl = float(json.loads(body)["ttl"])
        except (ValueError, KeyError, TypeError):
            ttl = 0.0  # not a lease we wrote: a writer holding it would have written a valid one
        date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
        return response["ETag"], now - response["LastModified"].timestamp() > ttl

    def _take(self) -> bool:
        for _ in range(3):  # the holder may release between our create and our read: create again
            if self._put(IfNoneMatch="*"):
                return True
            current = self._current()
            if current is not None:
                etag, expired = current
                return expired and self._put(IfMatch=etag)
        return False

    def acquire(self) -> bool:
        if self.held:
            return True
        with _HELD_LOCK:
            if self._ident in _HELD:
                _HELD[self._ident][1] += 1
                self._owner = _HELD[self._ident][0]
                self.held = True
                return True
            if not self._take():
                return False
            self._owner, self._lost = self, False
            _HELD[self._ident] = [self, 1]
            self.held = True
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease {self.key}", daemon=True)
        self._beat.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                with self._renewing:
                    if not self._put(IfMatch=self._etag):
                        self._lost = True  # stalled past the TTL and taken over: the taker writes the run
                        return
            except StoreError:
                continue  # a network blip: the next beat tries again within the TTL

    @property
    def lost(self) -> bool:
        """A heartbeat found the lease taken over (this process stalled past the TTL): do not publish."""
        return self._owner._lost

    def confirm(self) -> bool:
        """Renew the lease now (If-Match on our ETag): False if another writer took it over, e.g. while
        this process was stopped past the TTL and its heartbeat could not run. Call it right before
        publishing, so a writer that lost its run never publishes over the taker's."""
        owner = self._owner
        if not self.held or owner._lost:
            return False
        with owner._renewing:
            if not owner._put(IfMatch=owner._etag):
                owner._lost = True
        return not owner._lost

    def require(self, what: str) -> None:
        """Acquire or raise ClaimTaken naming the holder."""
        if not self.acquire():
            raise ClaimTaken(
                f"{what} is being written by {self.holder()} (host pid); wait for it to finish, "
                "or record under another tag to keep both runs"
            )

    def holder(self) -> str:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
            return str(json.loads(body)["holder"])
        except Exception:  # noqa: BLE001 — only for a message
            return "another process"

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with _HELD_LOCK:
            entry = _HELD[self._ident]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _HELD[self._ident]
        self._owner._end()

    def _end(self) -> None:
        """Stop the heartbeat, then delete the lease only if it is still ours (If-Match)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
        except Exception:  # noqa: BLE001, S110 — taken over or gone: nothing of ours to delete
            pass

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
