"""The common result types of every analysis: a claims frame with a fixed schema, and `Analysis`.

A claim row says, in one sentence, what is claimed; what `kind` of claim it is and where the
text states it (`source`); which experiment tests it; the statistic (method named in the text);
its value, p-value (and Holm-adjusted p for `paper` rows, within their `family`, see
`analysis.verdict`) and CI; how many runs and seeds entered; and a verdict, only ever one of
`VERDICTS` (docs/EXPERIMENTS.md). Paper rows also carry their Holm `family` (one per figure of each
paper), their smallest effect of interest `delta` (same scale as `value`; `reference` is the value of
no effect, so (value − reference)/delta is the standardized effect the forest plot draws) and, from
`analysis.verdict.judge`, `seeds_needed`: seeds per arm that would give 80% power at δ with the
variance observed. The families and δ are defined once, in `analysis.deltas`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import polars as pl

CLAIM_SCHEMA = {
    "claim": pl.String,
    "kind": pl.String,
    "source": pl.String,
    "experiment": pl.String,
    "statistic": pl.String,
    "value": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_runs": pl.Int64,
    "n_seeds": pl.Int64,
    "verdict": pl.String,
    "family": pl.String,
    "delta": pl.Float64,
    "reference": pl.Float64,
    "seeds_needed": pl.Int64,
}
CLAIM_COLUMNS = list(CLAIM_SCHEMA)
SUPPORTED, CONTRADICTED, INCONCLUSIVE, INSUFFICIENT = "supported", "contradicted", "inconclusive", "insufficient data"
ABSENT = "absent"  # an equivalence test (TOST at α) puts the effect inside ±δ
VERDICTS = (SUPPORTED, CONTRADICTED, ABSENT, INCONCLUSIVE, INSUFFICIENT)
# paper: stated in the GC or BFD paper; condition: an assumption the paper states; check: an identity
# or implementation check; literature: another paper's claim; toolkit: a question gclab adds.
KINDS = ("paper", "condition", "check", "literature", "toolkit")
ALPHA = 0.05


def _num(v) -> float | None:
    """Finite float or None: NaN/inf would print as invalid JSON and mean 'no value' anyway."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def claim(
    claim: str,
    experiment: str,
    statistic: str,
    verdict: str,
    *,
    kind: str,
    source: str,
    value=None,
    p_value=None,
    ci=(None, None),
    n_runs=0,
    n_seeds=0,
    family: str | None = None,
    delta: float | None = None,
    reference: float | None = None,
    seeds_needed: int | None = None,
) -> dict:
    """One claim row; the verdict must be one of VERDICTS, the kind one of KINDS, and a paper row needs
    its Holm `family` (`analysis.deltas`). `delta` > 0 is the smallest effect of interest on the scale of
    `value`, `reference` the value of no effect (0 unless given), `seeds_needed` from `verdict.judge`."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    if kind == "paper" and not family:
        raise ValueError(f"paper claim {claim!r} needs family=...; declare it in gclab/analysis/deltas.py")
    if delta is not None and not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a finite number > 0 (the smallest effect of interest); got {delta!r}")
    return {
        "claim": claim,
        "kind": kind,
        "source": source,
        "experiment": experiment,
        "statistic": statistic,
        "value": _num(value),
        "p_value": _num(p_value),
        "p_adjusted": None,
        "ci_low": _num(ci[0]),
        "ci_high": _num(ci[1]),
        "n_runs": int(n_runs or 0),
        "n_seeds": int(n_seeds or 0),
        "verdict": verdict,
        "family": family,
        "delta": _num(delta),
        "reference": _num(reference if reference is not None else (0.0 if delta is not None else None)),
        "seeds_needed": None if seeds_needed is None else int(seeds_needed),
    }


def insufficient(
    claim_text: str,
    experiment: str,
    statistic: str,
    reason: str,
    *,
    kind: str,
    source: str,
    n_runs=0,
    n_seeds=0,
    family: str | None = None,
    delta: float | None = None,
    reference: float | None = None,
) -> dict:
    """A claim that could not be tested; the reason goes into the statistic text."""
    return claim(
        claim_text,
        experiment,
        f"{statistic} — {reason}",
        INSUFFICIENT,
        kind=kind,
        source=source,
        n_runs=n_runs,
        n_seeds=n_seeds,
        family=family,
        delta=delta,
        reference=reference,
    )


def claims_frame(rows: list[dict]) -> pl.DataFrame:
    """Rows (from `claim`/`insufficient`) as a frame with exactly CLAIM_COLUMNS and CLAIM_SCHEMA."""
    return pl.DataFrame(rows, schema=CLAIM_SCHEMA) if rows else pl.DataFrame(schema=CLAIM_SCHEMA)


def empty_claims() -> pl.DataFrame:
    return pl.DataFrame(schema=CLAIM_SCHEMA)


@dataclass
class Analysis:
    """What one analysis module returns: named result tables and its claim rows.

    `deferred` maps the names of tables only the report draws to a function computing them (with
    others, as a dict) on the module's connection; `table(name)` computes them on first use and
    keeps them in `tables`, so `gclab claims` and `make calibrate` never pay for them."""

    name: str
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    claims: pl.DataFrame = field(default_factory=empty_claims)
    deferred: dict[str, Callable[[], dict[str, pl.DataFrame]]] = field(default_factory=dict)

    def table(self, name: str) -> pl.DataFrame:
        if name not in self.tables and name in self.deferred:
            self.tables.update(self.deferred[name]())
        return self.tables[name]


def defer(con, makers: dict[tuple[str, ...], Callable]) -> dict[str, Callable[[], dict[str, pl.DataFrame]]]:
    """`Analysis.deferred` from {table names: function of `con` returning those tables}."""
    return {name: partial(make, con) for names, make in makers.items() for name in names}
