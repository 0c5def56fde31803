"""run_id is a stable hash of the resolved config, the same on any machine and Python."""

import subprocess
import sys

from gclab.store.layout import run_id_of


def test_known_value_is_pinned():
    # Pinned to `printf '{"lr":0.1,"seed":0,"sweep":"demo"}' | sha256sum`: changing the
    # hashing would orphan every stored run.
    assert run_id_of({"lr": 0.1, "seed": 0, "sweep": "demo"}) == "7d6a6806984c"


def test_key_order_and_process_do_not_matter():
    a = {"lr": 0.1, "width": 64, "sweep": "s", "nested": {"b": 1, "a": [1, 2]}}
    b = {"nested": {"a": [1, 2], "b": 1}, "sweep": "s", "width": 64, "lr": 0.1}
    assert run_id_of(a) == run_id_of(b)
    code = (
        "from gclab.store.layout import run_id_of; "
        "print(run_id_of({'lr': 0.1, 'width': 64, 'sweep': 's', 'nested': {'b': 1, 'a': [1, 2]}}))"
    )
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert out == run_id_of(a)


def test_any_change_changes_the_id():
    base = {"lr": 0.1, "seed": 0}
    assert run_id_of(base) != run_id_of({**base, "lr": 0.1000001})
    assert run_id_of(base) != run_id_of({**base, "seed": 1})
    assert len(run_id_of(base)) == 12 and int(run_id_of(base), 16) >= 0
