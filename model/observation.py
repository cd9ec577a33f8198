"""How each evidence row enters the likelihood.

Every modelled row measures one quantity S (a count over a period, a cumulative count, a lag:
what its kind's function in model/likelihood.py says) on the scale log(1 + S), with noise set
by its reliability grade. Its wording sets the form: `exact` is a normal density; `at_least`,
`at_most` and `between` are the probability that the measured value falls in the stated range
(censoring). Each row is also, with a small prior probability, an outlier measured with a wide
sd, so that one conflicting report is discounted rather than dragging the estimate (the
posterior says which rows were).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from pymc.distributions.dist_math import log_diff_normal_cdf

from model.evidence import KIND, modelled, modelled_kinds
from model.likelihood import PATHS, OnPath
from model.timeline import Window

UNBOUNDED = 1e3  # stands for +-infinity on the log(1 + S) scale; Phi(+-1e3 / sd) is exactly 1 / 0


@dataclass(frozen=True)
class Observations:
    """The modelled rows as arrays, in ledger order (dimension `obs`)."""

    ids: list[str]
    kind: np.ndarray  # kind name per row
    # path -> (obs, month): what each row reads of the path (model/likelihood.py), zeros for
    # rows that read another path or a variable; every path of PATHS has its matrix
    weights: dict[str, np.ndarray]
    variable: np.ndarray  # (obs,) the variable a row measures (OnVariable), "" for the others
    bias_groups: list[str]  # names of the bias groups (dimension `bias_group`)
    bias_index: np.ndarray  # (obs,) index into bias_groups, or len(bias_groups) for none
    observed: np.ndarray  # log1p(value) for exact rows, the midpoint of the range otherwise
    lower: np.ndarray  # log1p(lower bound); a finite stand-in for exact rows (never used)
    upper: np.ndarray
    exact: np.ndarray  # (obs,) 1.0 for exact rows
    sigma: np.ndarray  # noise sd from the reliability grade
    grade: np.ndarray


def observations(evidence: pd.DataFrame, window: Window, noise: dict[str, float]) -> Observations:
    rows = modelled(evidence)
    rows = rows[rows["kind"].isin(modelled_kinds())]
    n, t = len(rows), window.n_months
    weights = {path: np.zeros((n, t)) for path in PATHS}
    variable = np.full(n, "", dtype=object)
    for i, (_, row) in enumerate(rows.iterrows()):
        measures = KIND[row["kind"]].likelihood(row, window)
        if isinstance(measures, OnPath):
            weights[measures.path][i] = measures.weights
        else:
            variable[i] = measures.name
    bias = rows["bias_group"].fillna("").astype(str).tolist() if "bias_group" in rows else [""] * n
    groups = sorted({g for g in bias if g})
    bound = rows["bound"].to_numpy()
    value, lo, hi = (np.log1p(rows[c].to_numpy(dtype=float)) for c in ("value", "lower", "upper"))
    lower = np.select([bound == "at_least", bound == "between"], [lo, lo], -UNBOUNDED)
    upper = np.select([bound == "at_most", bound == "between"], [hi, hi], UNBOUNDED)
    exact = bound == "exact"
    lower = np.where(exact, value - 1.0, lower)
    upper = np.where(exact, value + 1.0, upper)
    finite_mid = np.where(
        np.isfinite(lo) & np.isfinite(hi), (lo + hi) / 2, np.where(np.isfinite(lo), lo, hi)
    )
    return Observations(
        ids=rows["id"].tolist(),
        kind=rows["kind"].to_numpy(),
        weights=weights,
        variable=variable.astype(str),
        bias_groups=groups,
        bias_index=np.array([groups.index(g) if g else len(groups) for g in bias], dtype=int),
        observed=np.where(exact, value, finite_mid),
        lower=lower,
        upper=upper,
        exact=exact.astype(float),
        sigma=rows["reliability"].map(noise).to_numpy(dtype=float),
        grade=rows["reliability"].to_numpy(),
    )


def row_logp(value, mu, sigma, lower, upper, exact):
    """Log-likelihood of each row without the outlier component (all on the log1p scale)."""
    # PyTensor makes a Python float that float32 holds exactly (outlier_sd 1.5) a float32
    # constant, and log() of it would then be float32 (an error of 1e-8 per row).
    sigma = pt.cast(sigma, "float64")
    density = -0.5 * ((value - mu) / sigma) ** 2 - pt.log(sigma) - 0.5 * np.log(2 * np.pi)
    interval = log_diff_normal_cdf(mu, sigma, upper, lower)
    return pt.switch(pt.gt(exact, 0.5), density, interval)


def robust_logp(value, mu, sigma, lower, upper, exact, outlier_share, outlier_sd):
    """Row log-likelihood, marginalised over 'this row is an outlier'."""
    outlier_share = pt.cast(outlier_share, "float64")  # 0.25 or 0.5 would be float32 (row_logp)
    good = row_logp(value, mu, sigma, lower, upper, exact)
    wild = row_logp(value, mu, outlier_sd, lower, upper, exact)
    return pt.logaddexp(pt.log1p(-outlier_share) + good, pt.log(outlier_share) + wild)


def outlier_probability(value, mu, sigma, lower, upper, exact, outlier_share, outlier_sd):
    """Probability that each row is an outlier, given the parameters."""
    outlier_share = pt.cast(outlier_share, "float64")  # as in robust_logp
    wild = pt.log(outlier_share) + row_logp(value, mu, outlier_sd, lower, upper, exact)
    return pt.exp(
        wild - robust_logp(value, mu, sigma, lower, upper, exact, outlier_share, outlier_sd)
    )


def measurement_draw(
    mu, sigma, lower, upper, exact, outlier_share, outlier_sd, rng=None, size=None
):
    """Predictive draw of the measured log1p value of each row (the uncensored measurement)."""
    rng = np.random.default_rng() if rng is None else rng
    wild = rng.random(size=size if size is not None else np.shape(mu)) < outlier_share
    sd = np.where(wild, outlier_sd, sigma)
    return rng.normal(mu, sd, size=size)
