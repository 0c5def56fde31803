"""Static tools follow every import (issue 24): jedi resolves an internal import to its defining file,
inside the repository and from elsewhere through the installed .pth; editors see `gclab.Recorder`'s
signature through gclab/__init__.pyi; and the type checker of `make test` fails on an unresolved import."""

import inspect
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jedi

from gclab import Recorder

REPO = Path(__file__).resolve().parents[1]
LINE = "from gclab.collect.metrics import step_metrics"  # column 40 is inside `step_metrics`


def _goto(script: jedi.Script) -> tuple[str, str]:
    """(the name's full name, the file that defines it) for `step_metrics` in LINE."""
    (name,) = script.goto(1, 40)
    (defined,) = script.goto(1, 40, follow_imports=True)
    return name.full_name, str(defined.module_path)


def test_jedi_resolves_an_internal_import_to_its_defining_file():
    full_name, path = _goto(jedi.Script(LINE, project=jedi.Project(REPO)))
    assert full_name == "gclab.collect.metrics.step.step_metrics"
    assert path == str(REPO / "gclab" / "collect" / "metrics" / "step.py")


def test_jedi_resolves_it_from_outside_the_repository_through_the_install(tmp_path):
    # No PYTHONPATH and a foreign working directory: only the editable install's .pth leads to gclab.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import importlib.util, json, jedi\n"
        "spec = importlib.util.find_spec('gclab')\n"
        f"script = jedi.Script({LINE!r})\n"
        "(name,) = script.goto(1, 40)\n"
        "(defined,) = script.goto(1, 40, follow_imports=True)\n"
        "print(json.dumps([spec and spec.origin, name.full_name, str(defined.module_path)]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    origin, full_name, path = json.loads(run.stdout)
    assert origin is not None, "gclab is not installed in this interpreter: run `make setup` (editable install)"
    assert full_name == "gclab.collect.metrics.step.step_metrics"
    assert path == str(Path(origin).parent / "collect" / "metrics" / "step.py")


def test_editors_see_recorders_signature_through_the_stub():
    script = jedi.Script("import gclab\ngclab.Recorder(", project=jedi.Project(REPO))
    (signature,) = script.get_signatures(2, len("gclab.Recorder("))
    assert signature.name == "Recorder"
    assert [p.name for p in signature.params] == list(inspect.signature(Recorder).parameters)
    (defined,) = script.goto(2, len("gclab."), follow_imports=True)
    assert defined.module_path == REPO / "gclab" / "collect" / "recorder.py"
    completions = {c.name for c in jedi.Script("import gclab\ngclab.", project=jedi.Project(REPO)).complete(2, 6)}
    assert {"Recorder", "step_metrics", "query", "claims"} <= completions


def test_the_type_checker_fails_on_an_unresolved_import_and_checks_calls_through_the_stub(tmp_path):
    checker = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
    assert checker, "basedpyright is not installed: it is in the dev extra (make setup)"
    probe = tmp_path / "probe.py"
    # line 2 names no module; line 5 passes a keyword Recorder (as the stub shows it) does not take
    lines = ["import gclab.collect.metrics.step", "import gclab.nope", "from gclab import Recorder", ""]
    lines.append("Recorder(nope=1)")
    probe.write_text("\n".join(lines) + "\n")
    run = subprocess.run(
        [checker, "--pythonpath", sys.executable, "-p", str(REPO / "pyproject.toml"), "--outputjson", str(probe)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    found = {(d["range"]["start"]["line"] + 1, d.get("rule")) for d in json.loads(run.stdout)["generalDiagnostics"]}
    assert found == {(2, "reportMissingImports"), (5, "reportCallIssue")}


def test_make_test_type_checks_and_lints_complexity_before_the_tests():
    # `make -n` prints the recipe without running it: the checker sits between ruff and pytest.
    res = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(REPO), "test"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    ruff = next(i for i, line in enumerate(lines) if "ruff" in line and " check ." in line)
    checker = next(i for i, line in enumerate(lines) if "basedpyright" in line)
    pytest_ = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert ruff < checker < pytest_
    # ruff's C90 is on at complexity 10, so the `ruff check .` above enforces it
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C90" in config["select"] and config["mccabe"]["max-complexity"] == 10
