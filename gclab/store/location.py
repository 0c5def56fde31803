"""Where a store lives: a local folder or an object-store URI (`--data s3://bucket/prefix`).

Every command takes `--data` as typed and turns it into a `Location` once. A local store keeps its
inbox of run folders (`layout`) beside its Delta table; an object store has no atomic rename, so its
writers stage each run in a local folder and commit it to the table when it ends (docs/SCHEMA.md).

Credentials and the endpoint come from the standard AWS variables (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), read by pyarrow and delta-rs alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from gclab.store.errors import StoreError

# Schemes delta-rs and pyarrow.fs both open. `file://` is a local folder written as a URI.
OBJECT_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss")
TABLE_DIR = "delta"
# object_store's defaults for the client options delta-rs would otherwise take from `TIMEOUT` etc.
HTTP_DEFAULTS = {"timeout": "30s", "connect_timeout": "5s"}


@dataclass(frozen=True, kw_only=True)
class Location:
    """A parsed `--data`: `uri` for delta-rs, `local` for a folder on this machine (None for object storage)."""

    uri: str
    local: Path | None
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.local is not None

    @property
    def table_uri(self) -> str:
        """The store's Delta table (one table, partitioned by store table; docs/SCHEMA.md)."""
        return str(self.local / TABLE_DIR) if self.local is not None else f"{self.uri.rstrip('/')}/{TABLE_DIR}"

    def __str__(self) -> str:
        return str(self.local) if self.local is not None else self.uri


def _object_options(scheme: str) -> dict[str, str]:
    """delta-rs options for an object store, from the environment the user set for their S3 client."""
    if scheme not in ("s3", "s3a"):
        return {}
    opts = {"conditional_put": "etag"}  # concurrent collectors commit safely without a lock service
    # delta-rs also reads unprefixed variables as HTTP client options: `TIMEOUT`, which the Makefile
    # exports for `make sql` (seconds, often empty), would fail its parse. Explicit options win over
    # the environment, so pin object_store's own defaults.
    opts |= HTTP_DEFAULTS
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        if os.environ.get(key):
            opts[key] = os.environ[key]
    return opts


def parse(data: str | os.PathLike[str]) -> Location:
    """`--data` as typed → Location. A bare path or `file://` URI is local; `s3://bucket/prefix` is not."""
    text = os.fspath(data)
    scheme = urlparse(text).scheme.lower() if "://" in text else ""
    if not scheme:
        return Location(uri=text, local=Path(text))
    if scheme == "file":
        path = Path(urlparse(text).path)
        return Location(uri=str(path), local=path)
    if scheme not in OBJECT_SCHEMES:
        raise StoreError(
            f"--data {text}: scheme {scheme}:// is not supported; use a folder or one of "
            + ", ".join(f"{s}://" for s in OBJECT_SCHEMES)
        )
    if not urlparse(text).netloc:
        raise StoreError(f"--data {text} names no bucket; write it as {scheme}://<bucket>/<prefix>")
    return Location(uri=text.rstrip("/"), local=None, storage_options=_object_options(scheme))
