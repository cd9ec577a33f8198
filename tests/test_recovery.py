"""Parameter recovery: evidence simulated from the model with known values is fitted, and
the known values must fall inside the 99% posterior intervals.

The synthetic case has the real case's window and size-ratio rows, with monthly launch
counts and four transfer totals, all grade A. The export share is not identified by such
evidence (only export_share x production is), so its truth is set near its prior's centre and
rate_before is recovered through the prior; the test says what the design can identify.
"""

import os

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from model import load_case
from model.build import build_model
from model.fit import fit
from model.priors import resolve_priors
from model.sampler import SamplerSettings
from tests.conftest import CASE

TRUTH = {
    "rate_before": 10.0,
    "log_gain_log": np.log(np.log(2.0)),  # capacity multiplier 2
    "completion": 18.0,  # September 2024
    "ramp_months": 12.0,
    "export_share": 0.7,
    "use_lag": 2.0,
    "burst_sd": 0.3,
}


def synthetic_case(case_dir):
    real = pd.read_csv(CASE / "evidence.csv", dtype=str, keep_default_na=False)
    template = real.iloc[0].to_dict()
    rows = real[real["kind"] == "area_ratio"].to_dict("records")
    for month in pd.period_range("2023-12", "2025-12", freq="M"):
        rows.append(
            {
                **template,
                "id": f"launches-{month}",
                "kind": "launches",
                "period_start": str(month.start_time.date()),
                "period_end": str(month.end_time.date()),
                "reading": "",
            }
        )
    for date in ("2024-01-31", "2024-06-30", "2024-12-31", "2025-06-30"):
        rows.append(
            {
                **template,
                "id": f"transfers-{date}",
                "kind": "transfers",
                "period_start": "2023-09-01",
                "period_end": date,
                "reading": "",
            }
        )
    ledger = pd.DataFrame(rows)
    modelled = ledger["kind"] != "area_ratio"
    ledger.loc[modelled, ["value", "lower", "upper", "bound", "unit", "reliability"]] = [
        "1",
        "",
        "",
        "exact",
        "missiles",
        "A",
    ]
    ledger.to_csv(case_dir / "evidence.csv", index=False)
    case = load_case(case_dir)
    priors = resolve_priors(case)
    model = build_model(case, priors)
    with pm.do(model, TRUTH):
        draw = pm.sample_prior_predictive(draws=1, var_names=["evidence"], random_seed=7)
    measured = np.expm1(draw["prior_predictive"]["evidence"].to_numpy().ravel())
    ledger.loc[modelled, "value"] = [str(max(round(v), 0)) for v in measured]
    ledger.to_csv(case_dir / "evidence.csv", index=False)
    return load_case(case_dir)


def test_known_values_fall_inside_99_percent_intervals(case_copy):
    case = synthetic_case(case_copy)
    priors = resolve_priors(case)
    settings = SamplerSettings(draws=500, tune=500, chains=2, seed=3, prior_draws=100)
    idata = fit(case, priors, settings, conditional=False, checks=False)
    post = idata["posterior"]
    truth = {
        "rate_before": TRUTH["rate_before"],
        "capacity_multiplier": 2.0,
        "rate_after": 20.0,
        "export_share": TRUTH["export_share"],
        "use_lag": TRUTH["use_lag"],
    }
    truth["exported_flow"] = TRUTH["rate_before"] * TRUTH["export_share"]
    # One simulated data set and six known values: with 99% intervals a correct model fails
    # this check about 6% of the time (95% intervals: 26%). Coverage itself is what the
    # calibration (model/calibration.py) tests, over many data sets.
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].to_numpy(), [0.005, 0.995])
        assert lo <= value <= hi, f"{name}: truth {value} outside 99% interval [{lo:.3g}, {hi:.3g}]"
    # the evidence identifies the exported flow tightly: its 95% interval is narrow
    lo, hi = np.quantile(post["exported_flow"].to_numpy(), [0.025, 0.975])
    assert hi / lo < 1.6
    assert int(idata["sample_stats"]["diverging"].sum()) == 0


@pytest.mark.slow(minutes=0.6)  # three compilations, from warm caches
@pytest.mark.parametrize("seed", [11])
def test_same_seed_same_numbers_other_seed_other_numbers(seed):
    """Each fit() compiles afresh (the second from warm caches), as separate runs do."""
    case = load_case(CASE)
    priors = resolve_priors(case)
    settings = SamplerSettings(draws=100, tune=100, chains=2, seed=seed, prior_draws=50)
    a = fit(case, priors, settings, conditional=False, checks=False)
    b = fit(case, priors, settings, conditional=False, checks=False)
    other = SamplerSettings(**{**settings.__dict__, "seed": seed + 1})
    c = fit(case, priors, other, conditional=False, checks=False)
    for name in ("rate_before", "capacity_multiplier", "elasticity", "production"):
        np.testing.assert_array_equal(a["posterior"][name], b["posterior"][name])
        np.testing.assert_array_equal(a["prior"][name], b["prior"][name])
    assert not np.array_equal(a["posterior"]["rate_before"], c["posterior"]["rate_before"])


@pytest.mark.parametrize("first", ["model", "pymc"])
def test_numba_keeps_exact_arithmetic_whatever_was_imported_first(first):
    """The same inputs and seed give the same draws as `capest estimate` only with PyTensor's
    numba fastmath off (model/__init__.py). A notebook that imports pymc before model had it
    on: the February 11 main fit at 2 x 200 draws then gave another rate_after median (26.16
    against 27.60 in one run). The flag, read in a fresh process either way round."""
    import subprocess
    import sys

    other = "pymc" if first == "model" else "model"
    code = f"import {first}, {other}, pytensor; print(pytensor.config.numba__fastmath)"
    env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False", out.stderr
