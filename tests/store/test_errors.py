"""store.errors.one_line: the one-line wording every store and collect error goes through."""

from gclab.store.errors import one_line


def test_one_line_collapses_whitespace_prefixes_the_type_and_cuts():
    exc = OSError("disk\n  full\tnow")
    assert one_line(exc) == "disk full now"
    assert one_line(exc, with_type=True) == "OSError: disk full now"
    long = one_line(ValueError("x" * 1000), limit=50)
    assert len(long) == 50 and long.endswith("...") and long.startswith("xxx")
    assert one_line(ValueError("y" * 50), limit=50) == "y" * 50
