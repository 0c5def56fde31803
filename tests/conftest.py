import pytest


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "data"
