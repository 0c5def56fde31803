"""The Theorem 5.1 criterion, shared by the engine that writes `theorem.holds_tight` and the
analysis that recounts violations from the stored terms (docs/METRICS.md, "Theorem 5.1").

An example satisfies the tight bound when ``gc_x ≤ bound_tight · (1 + rtol)``, with ``rtol``
set by the dtype the run computed in (unit roundoff u = 2⁻²⁴ ≈ 6e-8 in float32, 2⁻⁵³ ≈ 1.1e-16
in float64). Both sides are sums of squares: gc_x of k·d per example, ``||∇θ f||²`` of
k·n_l per layer, whose rounding error is at most n·u for n terms; Σ T_l² adds σ_max from
an eigendecomposition (a few n·u) or from power iteration, which stops at a relative change of
1e-6 (float32) or 1e-10 (float64) and under-estimates σ_max slightly. So:

- float32: rtol = 1e-4, the n·u bound for sums of ~1700 terms, i.e. widths and input sizes up
  to the thousands, with the power-iteration stop two orders below it;
- float64: rtol = 1e-9, ten times the power-iteration stop; the rounding (n·u ≈ 1e-13) is far
  below it.

A NaN on either side fails the criterion. Nothing here imports more than the standard library,
so the analysis (no torch) and the engine (torch tensors) both use it.
"""

from __future__ import annotations

THEOREM_RTOL = {"float32": 1e-4, "float64": 1e-9}
# Power iteration for σ_max(∇_x h_l) stops at this relative change (gclab/collect/metrics/theorem.py).
POWER_TOL = {"float32": 1e-6, "float64": 1e-10}
# Runs that do not record their dtype (a user's Recorder config): the looser, float32 criterion.
DEFAULT_DTYPE = "float32"


def theorem_rtol(dtype: str) -> float:
    """rtol of the criterion for a dtype name ("float32", "torch.float64", …); unknown: float32."""
    return THEOREM_RTOL.get(str(dtype).removeprefix("torch."), THEOREM_RTOL[DEFAULT_DTYPE])


def power_tol(dtype: str) -> float:
    """The power-iteration stop for a dtype name; unknown: float32's."""
    return POWER_TOL.get(str(dtype).removeprefix("torch."), POWER_TOL[DEFAULT_DTYPE])


def theorem_holds(gc_x, bound, dtype: str):
    """gc_x ≤ bound·(1 + rtol) element-wise, for torch tensors or numpy arrays (NaN: False)."""
    return gc_x <= bound * (1 + theorem_rtol(dtype))


def theorem_holds_sql(gc_x: str, bound: str, dtype: str) -> str:
    """The same criterion as a DuckDB predicate over SQL expressions; ``dtype`` is an expression
    giving the dtype name (NULL: the default). DuckDB orders NaN above every number, so NaN is
    excluded explicitly to match IEEE comparison."""
    rtol = " ".join(f"WHEN '{name}' THEN {value:e}" for name, value in THEOREM_RTOL.items())
    default = f"{THEOREM_RTOL[DEFAULT_DTYPE]:e}"
    return (
        f"(NOT isnan({gc_x}) AND NOT isnan({bound}) AND "
        f"{gc_x} <= {bound} * (1 + CASE coalesce({dtype}, '{DEFAULT_DTYPE}') {rtol} ELSE {default} END))"
    )
