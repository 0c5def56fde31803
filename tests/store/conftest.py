"""Fixtures for the object-storage tests: a loopback S3 server per session, a bucket per test."""

import pytest

from tests._helpers.s3 import LoopbackS3, start_server


@pytest.fixture(scope="session")
def s3_server():
    server, s3 = start_server()
    yield s3
    server.stop()


@pytest.fixture
def s3(s3_server: LoopbackS3, monkeypatch) -> LoopbackS3:
    """The server, with the AWS_* variables set for this test (and its subprocesses) only."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    return s3_server


@pytest.fixture
def s3_uri(s3: LoopbackS3) -> str:
    """A store URI in a fresh, empty bucket."""
    return f"s3://{s3.new_bucket()}/store"
