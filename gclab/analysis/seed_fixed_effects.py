"""OLS with one intercept per seed in O(n·k²), not O(n·(k + seeds)²): Frisch–Waugh–Lovell.

Demeaning y and every regressor within seed removes the seed intercepts exactly; OLS of the
demeaned y on the demeaned regressors (no intercept) then has the dummy-variable regression's
coefficients and residuals. Its residual degrees of freedom are set before fitting to the dummy
regression's, n − (seeds + rank of the demeaned regressors) — statsmodels' `fit` keeps a df_resid
set on the model — so standard errors, t, p and confidence intervals equal that regression's too.
A store with thousands of seeds made the dummy design n × thousands (`analysis.trends`, issue 23).

`hc3_cov` is that regression's HC3 (heteroscedasticity-robust) covariance, for fits that pool runs
with different noise: igr pools fig4's grid with the igr sweep's corners, whose residual sd is 2.6×
fig4's on the make paper store (docs/EXPERIMENTS.md "igr: robust standard errors"). There the pooled
variance called a planted null `contradicted` in 7% of stores, against α/2 = 2.5%.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import statsmodels.api as sm
from statsmodels.regression.linear_model import RegressionResultsWrapper


def seed_fixed_effects_ols(y: np.ndarray, exog: np.ndarray, seeds: pl.Series) -> RegressionResultsWrapper:
    """OLS of `y` on the columns of `exog` (n × k) plus seed fixed effects.

    Results index the k columns of `exog` only; params, bse, tvalues, pvalues, conf_int, resid, ssr,
    scale and df_resid equal those of `y ~ 1 + exog + seed dummies`. Model-level summaries (R², F)
    refer to the demeaned fit, not the dummy regression.
    """
    exog = np.asarray(exog, dtype=float).reshape(len(y), -1)
    cols = [f"x{i}" for i in range(exog.shape[1])]
    frame = pl.DataFrame({"seed": seeds, "y": np.asarray(y, dtype=float), **dict(zip(cols, exog.T))})
    demeaned = frame.select((pl.col(c) - pl.col(c).mean().over("seed")).alias(c) for c in ["y", *cols])
    xd = demeaned.select(cols).to_numpy()
    model = sm.OLS(demeaned["y"].to_numpy(), xd)
    rank = np.linalg.matrix_rank(xd) if xd.size else 0
    model.df_resid = float(len(y) - seeds.n_unique() - rank)
    return model.fit()


def hc3_cov(fit: RegressionResultsWrapper, seeds: pl.Series) -> np.ndarray:
    """(k, k) HC3 covariance of a `seed_fixed_effects_ols` fit's coefficients: that of the dummy regression.

    (X̃ᵀX̃)⁻¹ X̃ᵀ diag(e²/(1 − h)²) X̃ (X̃ᵀX̃)⁻¹ on the demeaned design X̃. The sandwich block of the
    coefficients is FWL-invariant for any diagonal weights; the leverage h is the dummy regression's,
    the demeaned design's plus 1/runs of the seed (the seed block's projection)."""
    xd, bread = fit.model.exog, fit.normalized_cov_params  # (X̃ᵀX̃)⁺, which the fit already holds
    runs_of_seed = pl.DataFrame({"s": seeds}).select(pl.len().over("s")).to_series().to_numpy()
    h = np.einsum("ij,jk,ik->i", xd, bread, xd) + 1.0 / runs_of_seed
    free = 1.0 - h  # 0 where a run fits exactly (a seed of one run): its residual is 0 and adds nothing
    omega = np.divide(np.asarray(fit.resid, dtype=float) ** 2, free**2, out=np.zeros_like(free), where=free > 1e-12)
    return bread @ (xd.T * omega) @ xd @ bread
