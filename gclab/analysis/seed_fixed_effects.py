"""OLS with one intercept per seed in O(n·k²), not O(n·(k + seeds)²): Frisch–Waugh–Lovell.

Demeaning y and every regressor within seed removes the seed intercepts exactly; OLS of the
demeaned y on the demeaned regressors (no intercept) then has the dummy-variable regression's
coefficients and residuals. Its residual degrees of freedom are set before fitting to the dummy
regression's, n − (seeds + rank of the demeaned regressors) — statsmodels' `fit` keeps a df_resid
set on the model — so standard errors, t, p and confidence intervals equal that regression's too.
A store with thousands of seeds made the dummy design n × thousands (`analysis.trends`, issue 23).
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
