"""Each piece of evidence counts once: a relayed copy of a row (`same_as`) leaves the posterior
as it was, while the same copy entered as an independent row claims information it does not
hold and narrows it (slow tier: three fits of the synthetic case)."""

import shutil

import arviz_stats
import numpy as np
import pytest
import xarray as xr

from model import load_case
from model.fit import fit
from model.priors import resolve_priors
from model.sampler import SamplerSettings
from tests.conftest import ROOT

SYNTHETIC = ROOT / "data" / "cases" / "synthetic-plant"
ORIGINAL = "transfers-synthetic-2024-12"


def _log_exported_flow(tmp_path, name: str, same_as: str | None) -> xr.DataArray:
    """Fit a copy of the synthetic case, with a copy of ORIGINAL (relayed or independent)
    unless `same_as` is None, and return the draws of log(exported flow)."""
    folder = tmp_path / name
    shutil.copytree(SYNTHETIC, folder)
    ledger = folder / "evidence.csv"
    lines = ledger.read_text().splitlines()
    lines[0] += ",same_as"
    lines[1:] = [line + "," for line in lines[1:]]
    if same_as is not None:
        original = next(line for line in lines if line.startswith(ORIGINAL + ","))
        copy = original.replace(ORIGINAL, "transfers-synthetic-copy", 1)
        lines.append(copy + same_as)  # its same_as cell is the last, empty one
    ledger.write_text("\n".join(lines) + "\n")
    case = load_case(folder)
    settings = SamplerSettings(draws=1000, tune=1000, chains=2, prior_draws=100)
    post = fit(case, resolve_priors(case), settings, conditional=False, checks=False)
    post = post["posterior"].to_dataset()
    return np.log(post["rate_before"] * post["export_share"])


def _sd_and_mcse(draws: xr.DataArray) -> tuple[float, float]:
    ds = xr.Dataset({"x": draws})
    mcse = float(arviz_stats.mcse(ds, method="sd")["x"])
    return float(draws.std()), mcse


@pytest.mark.slow(minutes=0.7)
def test_a_relayed_copy_leaves_the_posterior_and_an_independent_copy_narrows_it(tmp_path):
    base, base_se = _sd_and_mcse(_log_exported_flow(tmp_path, "base", None))
    relayed, relayed_se = _sd_and_mcse(_log_exported_flow(tmp_path, "relayed", ORIGINAL))
    copied, copied_se = _sd_and_mcse(_log_exported_flow(tmp_path, "copied", ""))
    assert abs(relayed - base) <= 3 * np.hypot(base_se, relayed_se)
    assert copied < base - 3 * np.hypot(base_se, copied_se)
