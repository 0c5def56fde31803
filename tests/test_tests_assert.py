"""Every test function asserts: an `assert`, pytest.raises/warns/approx/fail, an `assert_*` call (numpy.testing,
torch.testing), or a call to a helper that itself asserts (a function of the same module or of tests/_helpers).
A test that asserts nothing cannot fail, so it is a defect."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PYTEST_CHECKS = {"raises", "warns", "approx", "fail", "deprecated_call"}


def _called_names(node: ast.AST) -> set[str]:
    out = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            f = call.func
            out.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return out


def _checks_directly(fn: ast.AST) -> bool:
    if any(isinstance(n, ast.Assert) for n in ast.walk(fn)):
        return True
    return any(n in PYTEST_CHECKS or n.startswith(("assert_", "_assert")) for n in _called_names(fn))


def _functions(tree: ast.AST) -> dict[str, ast.AST]:
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _asserting(functions: dict[str, ast.AST], known: set[str]) -> set[str]:
    """Names of functions that assert, directly or through a call to another asserting function (a fixpoint)."""
    found = set(known) | {name for name, fn in functions.items() if _checks_directly(fn)}
    while True:
        more = {name for name, fn in functions.items() if name not in found and _called_names(fn) & found}
        if not more:
            return found
        found |= more


def _helper_asserting() -> set[str]:
    functions = {}
    for path in sorted((TESTS / "_helpers").rglob("*.py")):
        functions |= _functions(ast.parse(path.read_text(), str(path)))
    return _asserting(functions, set())


def silent_tests(path: Path, helpers: set[str]) -> list[str]:
    """Test functions in one module that neither assert nor call a helper that asserts."""
    functions = _functions(ast.parse(path.read_text(), str(path)))
    asserting = _asserting(functions, helpers)
    return [name for name in functions if name.startswith("test_") and name not in asserting]


def test_every_test_function_asserts():
    helpers = _helper_asserting()
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) >= 30, modules  # the walk found the suite
    silent = {str(p.relative_to(TESTS)): names for p in modules if (names := silent_tests(p, helpers))}
    assert not silent, f"test functions without an assertion: {silent}"


def test_the_check_catches_a_silent_test(tmp_path):
    module = tmp_path / "test_fake.py"
    module.write_text(
        "import pytest\n"
        "def _check(x):\n    assert x\n"
        "def _indirect(x):\n    _check(x)\n"
        "def test_silent():\n    print(1)\n"
        "def test_via_helper():\n    _indirect(1)\n"
        "def test_via_shared_helper():\n    assert_calibrated({}, 0)\n"
        "def test_raises():\n    with pytest.raises(ValueError):\n        int('x')\n"
        "def test_np():\n    np.testing.assert_allclose(1, 1)\n"
    )
    assert silent_tests(module, _helper_asserting()) == ["test_silent"]
