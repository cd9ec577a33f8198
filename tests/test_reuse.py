"""The previous run's refits reweighted to this run's ledger (model/reuse.py), against a fresh
refit: an analyst added a row since the last run, and the source refit that run sampled
stands in for this run's when its weights meet the fit rules."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr

from model import load_case, reuse
from model.build import build
from model.fit import REFIT_VARS, Alternatives, Refit
from model.priors import resolve_priors
from model.publish import NETCDF_ENGINE
from model.reuse import GROUP, REUSED, Previous
from model.sampler import Sampler, SamplerSettings
from model.timing import Stopwatch

from .conftest import CASE

ADDED = "launches-whitehouse-2024-01-02"  # the row "added" since the previous run
SOURCE = "ua-prosecutors"  # the source both runs leave out (4 rows; PSIS cannot, k ~ 1)
NODE = f"source_refits/bias-group-{SOURCE}"


def _target(case, built) -> Refit:
    """The source left out, as fit.py's _source_refits asks for it."""
    ids = built.observations.ids
    rows = case.evidence.loc[case.evidence["bias_group"] == SOURCE, "id"].tolist()
    weight = (~np.isin(ids, rows)).astype(float)
    return Refit(NODE, f"refit without {SOURCE}", built.readings.weights, {"row_weight": weight},
                 tuple(rows))  # fmt: skip


def _saved(main: Alternatives, target: Refit, one: xr.DataTree) -> xr.Dataset:
    """What fit.py saves of a sampled refit for the next run (Alternatives.proposals)."""
    free = one["posterior"].to_dataset()[[rv.name for rv in main.density.free]]
    node = xr.Dataset({"diverging": one["sample_stats"]["diverging"]})
    return main.proposals([target], {target.node: (node, free)})[target.node]


@pytest.fixture(scope="module")
def runs():
    """The previous run's source refit (the ledger without ADDED) and a fresh one of this
    run's ledger, each sampled at the fit rules' size (4 x 1,000)."""
    case = load_case(CASE)
    priors = resolve_priors(case)
    evidence = case.evidence[case.evidence["id"] != ADDED].reset_index(drop=True)
    before = dataclasses.replace(case, evidence=evidence)
    built_before, built_after = build(before, priors), build(case, priors)
    out = {}
    for name, c, built in (("before", before, built_before), ("after", case, built_after)):
        target = _target(c, built)
        sampler = Sampler(built.model, SamplerSettings())
        one = sampler.sample(target.weights, 11, label=target.what, **target.data)
        main = _alternatives(built, one, None)
        assert main.density is not None  # compiled: proposals() saves only when it is
        out[name] = (built, target, one, main)
    return out


def _alternatives(built, one: xr.DataTree, previous: Previous | None) -> Alternatives:
    # The refit's draws stand in for the run's main fit: from_previous reads only their
    # shape and coordinates (the reweighted draws are the previous refit's), proposals()
    # nothing of them.
    return Alternatives(one, built.model, {}, Stopwatch(), True, previous)


def _median_and_mcse(x: xr.DataArray, log_weight=None, efficiency=1.0) -> tuple[float, float]:
    """The median, and its Monte Carlo error (ArviZ's, autocorrelation-aware; for weighted
    draws that of the draws over the square root of the weights' efficiency)."""
    mcse = float(azs.mcse(x, method="quantile", prob=0.5)) / np.sqrt(efficiency)
    values = x.transpose("chain", "draw").to_numpy().ravel()
    if log_weight is None:
        return float(np.median(values)), mcse
    w = np.exp(log_weight.transpose("chain", "draw").to_numpy().ravel())
    order = np.argsort(values)
    cumulative = np.cumsum(w[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]), mcse


def test_the_previous_runs_refit_reweighted_agrees_with_a_fresh_refit(runs):
    _, target_b, one_b, main_b = runs["before"]
    built_a, target_a, one_a, _ = runs["after"]
    previous = Previous("20261201T000000Z", {NODE: _saved(main_b, target_b, one_b)})
    main = _alternatives(built_a, one_a, previous)
    node = main.from_previous(target_a)
    assert node is not None, target_a.attrs.get("previous_refit")
    assert node.attrs["method"] == REUSED and node.attrs["reused_from"] == "20261201T000000Z"
    assert node.attrs["pareto_k"] <= 0.7
    # the added row is not the source's: the weights are not all equal
    assert node.attrs["efficiency"] < 0.999
    assert list(node["predicted"]["obs"].to_numpy()) == list(target_a.keep)
    fresh = one_a["posterior"].to_dataset()
    for name in ("rate_before", "rate_after", "exported_flow"):
        got, got_mcse = _median_and_mcse(node[name], node["log_weight"], node.attrs["efficiency"])
        want, want_mcse = _median_and_mcse(fresh[name])
        assert abs(got - want) <= 4 * np.hypot(got_mcse, want_mcse), (name, got, want)
    assert main.proposals([], {})[NODE] is previous.proposals[NODE]  # carried forward


def test_the_same_ledger_gives_the_refits_own_draws(runs):
    """Nothing changed: every weight equal, and the variables at the saved points are the
    refit's own draws."""
    built, target, one, main = runs["after"]
    previous = Previous("20261201T000000Z", {NODE: _saved(main, target, one)})
    node = _alternatives(built, one, previous).from_previous(target)
    assert node.attrs["pareto_k"] == 0.0 and node.attrs["efficiency"] == 1.0
    post = one["posterior"].to_dataset()
    for name in REFIT_VARS:
        np.testing.assert_allclose(node[name].to_numpy(), post[name].to_numpy(), rtol=1e-6)


def test_draws_saved_with_the_wrong_density_are_refused(runs):
    """Negative control, a likelihood bug: the previous refit's draws saved with the log
    density of the whole ledger (the refit's row weights forgotten), not of the target they
    were sampled from. The weights then undo the source's likelihood at draws that never
    saw it; the rules of a reweighted result refuse them and the target is refitted."""
    _, target_b, one_b, main_b = runs["before"]
    built_a, target_a, one_a, _ = runs["after"]
    wrong = dataclasses.replace(target_b, data={})  # every row in
    previous = Previous("20261201T000000Z", {NODE: _saved(main_b, wrong, one_b)})
    assert _alternatives(built_a, one_a, previous).from_previous(target_a) is None
    why = target_a.attrs.pop("previous_refit")
    # a rule failed, decisively: here the weights' efficiency (0.05 in one run, against
    # 0.6-0.8 with the right density) leaves a reweighted ESS far under 400
    rules = why.split(" (Pareto k")[0]
    assert "reweighted bulk ESS" in rules or "Pareto k" in rules, why


def test_draws_of_another_model_are_never_reweighted(runs):
    _, target_b, one_b, main_b = runs["before"]
    built_a, target_a, one_a, _ = runs["after"]
    saved = _saved(main_b, target_b, one_b)
    saved.attrs["layout"] = saved.attrs["layout"].replace("rate_before_log__", "rate_before")
    previous = Previous("20261201T000000Z", {NODE: saved})
    assert _alternatives(built_a, one_a, previous).from_previous(target_a) is None
    assert target_a.attrs.pop("previous_refit") == "its draws are of another model"


def test_draws_of_a_refit_that_failed_its_diagnostics_are_refitted(runs):
    """A previous refit with a divergent transition fails the fit rules; reweighting it would
    carry the failure into this run, where a fresh refit (retried if it fails) could pass."""
    _, target_b, one_b, main_b = runs["before"]
    built_a, target_a, one_a, _ = runs["after"]
    saved = _saved(main_b, target_b, one_b)
    saved["diverging"][0, 5] = True
    previous = Previous("20261201T000000Z", {NODE: saved})
    assert _alternatives(built_a, one_a, previous).from_previous(target_a) is None
    assert "1 divergent transition(s)" in target_a.attrs.pop("previous_refit")


def _previous_run(reports, case_id: str) -> Path:
    """A previous run's posterior.nc with one saved refit, under `latest`."""
    node = xr.Dataset(
        {
            "upars": (("chain", "draw", "unconstrained_parameter"), np.zeros((2, 3, 4))),
            "log_density": (("chain", "draw"), np.zeros((2, 3))),
        },
        attrs={"layout": "rate_before_log__:1"},
    )
    posterior = xr.Dataset({"x": ("draw", np.arange(3.0))})
    tree = xr.DataTree.from_dict(
        {"posterior": posterior, f"{GROUP}/source_refits/bias-group-a": node}
    )
    folder = reports / case_id / "20261201T000000Z"
    folder.mkdir(parents=True)
    tree.to_netcdf(folder / "posterior.nc", engine=NETCDF_ENGINE)
    (reports / case_id / "latest").symlink_to(folder.name)
    return folder / "posterior.nc"


def test_a_previous_run_cut_short_is_said_and_every_refit_is_sampled(tmp_path, caplog):
    """A posterior.nc whose copy or write was cut short (a full disk, a killed rsync) is not
    read as refits: load says so and returns nothing, and the run samples its refits."""
    path = _previous_run(tmp_path, "plant")
    previous = reuse.load(tmp_path, "plant")  # intact: its one refit, by its path
    assert previous.run == "20261201T000000Z"
    assert list(previous.proposals) == ["source_refits/bias-group-a"]
    assert previous.proposals["source_refits/bias-group-a"]["upars"].shape == (2, 3, 4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="model.reuse"):
        assert reuse.load(tmp_path, "plant") is None
    assert f"the previous run's refits ({tmp_path / 'plant' / 'latest' / 'posterior.nc'})" in (
        caplog.text
    )
    assert "cannot be read" in caplog.text and "refitting" in caplog.text
