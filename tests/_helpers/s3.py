"""A real S3-compatible server on loopback (moto's server mode), for the object-storage tests.

One server per test session, in a process of its own: delta-rs holds the GIL through a request, so a
server thread in the test's own process could never answer it. Each test gets a fresh bucket and the
standard AWS_* variables, which gclab (`store.location`), boto3 and every `gclab` subprocess read as a
user's S3 client would. `python -m tests._helpers.s3` is that server: it prints its port, then serves
until its stdin closes.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

# Any non-empty keys: moto accepts them all, and the variables keep a developer's real ones out.
KEYS = {"AWS_ACCESS_KEY_ID": "gclab-test", "AWS_SECRET_ACCESS_KEY": "gclab-test", "AWS_REGION": "us-east-1"}


@dataclass(frozen=True)
class LoopbackS3:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The variables a process needs to reach this server (proxies would route loopback away)."""
        return {**KEYS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": KEYS["AWS_REGION"], "NO_PROXY": "*"}

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=KEYS["AWS_REGION"],
        )

    def new_bucket(self) -> str:
        name = f"gclab-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


class Server:
    """The server process; `stop()` closes its stdin and waits for it."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._helpers.s3"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = self.proc.stdout.readline().strip()
        if not port.isdigit():
            self.stop()
            raise RuntimeError(f"the loopback S3 server did not start (said {port!r}); is moto[server] installed?")
        self.s3 = LoopbackS3(endpoint=f"http://127.0.0.1:{port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate("", timeout=60)


def start_server() -> tuple[Server, LoopbackS3]:
    """(server, LoopbackS3): a moto server on a free loopback port; stop it with server.stop()."""
    server = Server()
    return server, server.s3


def main() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
