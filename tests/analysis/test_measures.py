import itertools
import math

import numpy as np
import polars as pl
import pytest

from gclab.analysis import measures
from tests._helpers.planted import assert_calibrated, null_counts, verdicts


def brute_tau_b(x, y) -> float:
    """Kendall τ-b by explicit pair loops: (C − D) / √((n0 − ties_x)(n0 − ties_y))."""
    c = d = tx = ty = n0 = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        n0 += 1
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tx += sx == 0
        ty += sy == 0
        c += sx * sy > 0
        d += sx * sy < 0
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    return (c - d) / denom if denom else float("nan")


def brute_granulated(rows: list[dict], measure: str, axes: list[str]) -> dict[str, float]:
    """ψ per axis: explicit grouping of runs that share sweep, seed and every other axis."""
    out = {}
    for axis in axes:
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            key = (r["sweep"], r["seed"], *[r[a] for a in axes if a != axis])
            groups.setdefault(key, []).append(r)
        taus = [
            brute_tau_b([r[measure] for r in g], [r["gen_gap"] for r in g])
            for g in groups.values()
            if len({r[axis] for r in g}) >= 2
        ]
        taus = [t for t in taus if not math.isnan(t)]
        out[axis] = sum(taus) / len(taus) if taus else None
    return out


def test_hand_checked_example():
    # Six runs: lr ∈ {0.1, 0.2, 0.3} × batch ∈ {16, 32}, measure m = 1..6, gap g = 1 3 2 4 6 5.
    # Overall: 15 pairs, discordant only (2,3) and (5,6) → τ = (13 − 2)/15 = 11/15.
    # Axis lr (groups batch=16: m 1 2 3 vs g 1 3 2 → (2 − 1)/3; batch=32 the same) → ψ_lr = 1/3.
    # Axis batch (groups lr=…: pairs (1,4)/(1,4), (2,5)/(3,6), (3,6)/(2,5), all concordant) → ψ_batch = 1.
    # Ψ = (1/3 + 1)/2 = 2/3.
    runs = pl.DataFrame(
        {
            "sweep": ["s"] * 6,
            "seed": [0] * 6,
            "lr": [0.1, 0.2, 0.3] * 2,
            "batch_size": [16] * 3 + [32] * 3,
            "m": [1.0, 2, 3, 4, 5, 6],
            "gen_gap": [1.0, 3, 2, 4, 6, 5],
        }
    )
    table, per_axis = measures.ranking(runs, ["m"], ["lr", "batch_size"])
    row = table.row(0, named=True)
    assert row["kendall_tau"] == pytest.approx(11 / 15) and row["granulated_tau"] == pytest.approx(2 / 3)
    psi = dict(zip(per_axis["axis"], per_axis["psi"]))
    assert psi == pytest.approx({"lr": 1 / 3, "batch_size": 1.0})
    assert brute_tau_b(runs["m"].to_list(), runs["gen_gap"].to_list()) == pytest.approx(11 / 15)


def test_matches_brute_force_with_ties_and_missing_runs():
    rng = np.random.default_rng(3)
    grid = list(itertools.product([0.01, 0.1, 1.0], [16, 64], [8, 32], [0, 1]))
    keep = rng.choice(len(grid), size=19, replace=False)
    rows = [
        {
            "sweep": "s",
            "lr": grid[i][0],
            "batch_size": grid[i][1],
            "width": grid[i][2],
            "seed": grid[i][3],
            "m": float(rng.integers(0, 4)),
            "gen_gap": float(rng.integers(0, 3)),
        }
        for i in sorted(keep)
    ]
    runs = pl.DataFrame(rows)
    axes = ["lr", "batch_size", "width"]
    table, per_axis = measures.ranking(runs, ["m"], axes)
    assert table["kendall_tau"][0] == pytest.approx(brute_tau_b(runs["m"].to_list(), runs["gen_gap"].to_list()))
    expected = brute_granulated(rows, "m", axes)
    got = dict(zip(per_axis["axis"], per_axis["psi"]))
    for axis in axes:
        assert (got[axis] is None and expected[axis] is None) or got[axis] == pytest.approx(expected[axis])
    defined = [v for v in expected.values() if v is not None]
    assert table["granulated_tau"][0] == pytest.approx(sum(defined) / len(defined))


def test_gc_ranks_first_on_the_planted_store(default_store):
    from gclab.store.db import connect

    a = measures.analyze(connect(default_store, warn=False))
    assert a.claims["verdict"].to_list() == ["supported"] and a.claims["kind"].to_list() == ["toolkit"]
    psi = a.tables["ranking"].filter(pl.col("measure") == "gc")["granulated_tau"][0]
    assert a.claims["value"][0] == pytest.approx(psi) and "pooled τ" in a.claims["statistic"][0]
    assert a.tables["ranking"]["measure"][0] == "gc"
    assert {"lr", "batch_size", "width", "depth", "l2"} <= set(a.tables["per_axis"]["axis"])


def test_negative_correlation_is_contradicted():
    assert verdicts(measures, sweeps=["gcreg", "igr"], effects={"measure_corr": -1.0}) == ["contradicted"]


def test_null_correlation_is_calibrated():
    counts = null_counts(measures, 60, sweeps=["gcreg"], effects={"measure_corr": 0.0})
    assert_calibrated(counts, 60)


def test_psi_permutation_p_matches_exact_enumeration():
    # Two seeds × lr ∈ 3 levels: every within-seed permutation of the gap (3! × 3! = 36) enumerated by hand.
    runs = pl.DataFrame(
        {
            "sweep": ["s"] * 6,
            "seed": [0, 0, 0, 1, 1, 1],
            "lr": [0.1, 0.2, 0.3] * 2,
            "m": [1.0, 2, 3, 1.5, 2.5, 3.5],
            "gen_gap": [0.1, 0.3, 0.2, 0.1, 0.2, 0.3],
        }
    )
    obs = (brute_tau_b([1, 2, 3], [0.1, 0.3, 0.2]) + brute_tau_b([1.5, 2.5, 3.5], [0.1, 0.2, 0.3])) / 2
    null = [
        (
            brute_tau_b([1, 2, 3], [[0.1, 0.3, 0.2][i] for i in p])
            + brute_tau_b([1.5, 2.5, 3.5], [[0.1, 0.2, 0.3][i] for i in q])
        )
        / 2
        for p in itertools.permutations(range(3))
        for q in itertools.permutations(range(3))
    ]
    exact = sum(abs(v) >= abs(obs) - 1e-12 for v in null) / len(null)
    res = measures.psi_test(runs, "m", ["lr"], n_resamples=20000)
    assert res["psi"] == pytest.approx(obs) and res["n_axes"] == 1 and res["n_groups"] == 2
    assert res["p_value"] == pytest.approx(exact, abs=0.01)
    table, _ = measures.ranking(runs, ["m"], ["lr"])
    assert table["granulated_tau"][0] == pytest.approx(res["psi"])
