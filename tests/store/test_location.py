"""`--data` parsing: a folder, a file:// URI, an object-store URI, and what is refused."""

from pathlib import Path

import pytest

from gclab.store.errors import StoreError
from gclab.store.location import HTTP_DEFAULTS, TABLE_DIR, parse


def test_folder_and_file_uri_are_local(tmp_path):
    for text in (str(tmp_path), f"file://{tmp_path}"):
        loc = parse(text)
        assert loc.is_local and loc.local == tmp_path
        assert loc.table_uri == str(tmp_path / TABLE_DIR)
        assert loc.storage_options == {}


def test_relative_path_stays_relative():
    loc = parse("data")
    assert loc.local == Path("data") and str(loc) == "data"


def test_s3_uri_reads_the_aws_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    loc = parse("s3://bucket/some/prefix/")
    assert not loc.is_local and loc.local is None
    assert loc.uri == "s3://bucket/some/prefix"
    assert loc.table_uri == f"s3://bucket/some/prefix/{TABLE_DIR}"
    opts = loc.storage_options
    assert opts["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000" and opts["AWS_ALLOW_HTTP"] == "true"
    assert opts["conditional_put"] == "etag" and opts["AWS_ACCESS_KEY_ID"] == "key"


@pytest.mark.parametrize(
    ("text", "says"), [("ftp://host/x", "ftp:// is not supported"), ("s3:///prefix", "names no bucket")]
)
def test_unsupported_or_bucketless_uri_is_one_line(text, says):
    with pytest.raises(StoreError, match=says) as err:
        parse(text)
    assert "\n" not in str(err.value)


def test_make_sql_timeout_variable_never_reaches_delta_rs(monkeypatch):
    # The Makefile exports TIMEOUT (often empty); delta-rs would parse it as its HTTP timeout.
    monkeypatch.setenv("TIMEOUT", "")
    opts = parse("s3://bucket/prefix").storage_options
    assert opts["timeout"] == HTTP_DEFAULTS["timeout"] and opts["connect_timeout"] == HTTP_DEFAULTS["connect_timeout"]
