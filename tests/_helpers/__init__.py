"""Shared test helpers, imported as ``tests._helpers.<module>``; conftest.py files hold fixtures only.

- cli: run the package as a subprocess, snapshot a store's Parquet bytes.
- planted: planted stores and the verdict-calibration checks of the analysis tests.
- bruteforce: float64 references for the metric engine (torch.func Jacobians, per-example loops).

Helpers that assert are named ``assert_*`` (tests/test_tests_assert.py counts a call to one as an assertion).
"""
