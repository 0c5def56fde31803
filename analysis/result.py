"""The common result types of every analysis: a claims frame with a fixed schema, and `Analysis`.

A claim row says, in one sentence, what the paper claims; which experiment tests it; the
statistic (method named in the text); its value, p-value and CI; how many runs and seeds
entered; and a verdict. Verdicts are only ever one of `VERDICTS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

CLAIM_COLUMNS = ["claim", "experiment", "statistic", "value", "p_value", "ci_low", "ci_high",
                 "n_runs", "n_seeds", "verdict"]
CLAIM_SCHEMA = {"claim": pl.String, "experiment": pl.String, "statistic": pl.String,
                "value": pl.Float64, "p_value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                "n_runs": pl.Int64, "n_seeds": pl.Int64, "verdict": pl.String}
SUPPORTED, CONTRADICTED, INSUFFICIENT = "supported", "contradicted", "insufficient data"
VERDICTS = (SUPPORTED, CONTRADICTED, INSUFFICIENT)
ALPHA = 0.05


def _num(v) -> float | None:
    """Finite float or None: NaN/inf would print as invalid JSON and mean 'no value' anyway."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def claim(claim: str, experiment: str, statistic: str, verdict: str, *, value=None, p_value=None,
          ci=(None, None), n_runs=0, n_seeds=0) -> dict:
    """One claim row; the verdict must be one of VERDICTS."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return {"claim": claim, "experiment": experiment, "statistic": statistic, "value": _num(value),
            "p_value": _num(p_value), "ci_low": _num(ci[0]), "ci_high": _num(ci[1]),
            "n_runs": int(n_runs or 0), "n_seeds": int(n_seeds or 0), "verdict": verdict}


def insufficient(claim_text: str, experiment: str, statistic: str, reason: str, *, n_runs=0, n_seeds=0) -> dict:
    """A claim that could not be tested; the reason goes into the statistic text."""
    return claim(claim_text, experiment, f"{statistic} — {reason}", INSUFFICIENT, n_runs=n_runs, n_seeds=n_seeds)


def claims_frame(rows: list[dict]) -> pl.DataFrame:
    """Rows (from `claim`/`insufficient`) as a frame with exactly CLAIM_COLUMNS and CLAIM_SCHEMA."""
    return pl.DataFrame(rows, schema=CLAIM_SCHEMA) if rows else pl.DataFrame(schema=CLAIM_SCHEMA)


def empty_claims() -> pl.DataFrame:
    return pl.DataFrame(schema=CLAIM_SCHEMA)


@dataclass
class Analysis:
    """What one analysis module returns: named result tables and its claim rows."""
    name: str
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    claims: pl.DataFrame = field(default_factory=empty_claims)
