"""Sample once: readings and prior-only scenarios are the main fit reweighted by PSIS
(model/reweight.py), with a refit when the weights cannot be trusted."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from model.reweight import (
    LOG_WEIGHT,
    PriorDensity,
    interval_summary,
    psis,
    weighted_quantile,
)
from tests.conftest import CASE

SAMPLE = ("chain", "draw")


def _draws(rng, n_chains=4, n_draws=1000) -> xr.Dataset:
    """Independent draws of the refit variables, as a posterior with chains."""
    shape = (n_chains, n_draws)
    rate_before = np.exp(rng.normal(2.5, 0.4, shape))
    multiplier = np.exp(np.abs(rng.normal(0.4, 0.3, shape)))
    export_share = rng.beta(4.0, 4.0, shape)
    return xr.Dataset(
        {
            "rate_before": (SAMPLE, rate_before),
            "exported_flow": (SAMPLE, rate_before * export_share),
            "capacity_multiplier": (SAMPLE, multiplier),
            "rate_after": (SAMPLE, rate_before * multiplier),
            "production_by_year": ((*SAMPLE, "year"), rate_before[..., None] * [10.0, 12.0]),
        },
        coords={"year": [2024, 2025]},
    )


def _alternatives(post: xr.Dataset):
    from model.fit import Alternatives
    from model.timing import Stopwatch

    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "sample_stats": xr.Dataset(
                {"diverging": (SAMPLE, np.zeros((post.sizes["chain"], post.sizes["draw"]), bool))}
            ),
        }
    )
    return Alternatives(tree, None, {}, Stopwatch())


def _refit():
    """How to refit the target: result() hands it back (with why) when reweighting will not
    do; fit() then samples it as a job (run_refits)."""
    from model.fit import Refit

    return Refit("scenarios/x", "x", np.ones(1))


def _refitted(node) -> bool:
    from model.fit import Refit

    return isinstance(node, Refit)


def test_reweighting_to_a_nearby_target_keeps_the_main_draws():
    post = _draws(np.random.default_rng(1))
    # the target: rate_before's log-normal shifted by a tenth of its sd (a mild prior change)
    log_ratio = xr.DataArray(0.25 * (np.log(post["rate_before"]) - 2.5), dims=SAMPLE)
    node = _alternatives(post).result("mild", lambda: log_ratio, _refit())
    assert not _refitted(node) and node.attrs["method"] == "reweighted"
    assert node.attrs["pareto_k"] < 0.7 and LOG_WEIGHT in node
    # the weighted median moves the way the exact target says: log-normal mean 2.5 + 0.25 sd^2
    x = post["rate_before"].to_numpy().ravel()
    w = np.exp(node[LOG_WEIGHT].to_numpy().ravel())
    assert weighted_quantile(x, w, 0.5) == pytest.approx(np.exp(2.5 + 0.25 * 0.16), rel=0.03)


def test_refit_when_pareto_k_is_large():
    post = _draws(np.random.default_rng(2))
    # a target far in the tail of the draws: weights ~ exp(3 z^2), Pareto k well above 0.7
    z = (np.log(post["rate_before"]) - 2.5) / 0.4
    log_ratio = xr.DataArray(3.0 * z.to_numpy() ** 2, dims=SAMPLE)
    assert psis(log_ratio).pareto_k > 0.7
    node = _alternatives(post).result("far", lambda: log_ratio, _refit())
    assert _refitted(node) and node.attrs["method"] == "refit"
    assert "Pareto k" in node.attrs["refit_reason"] and node.attrs["pareto_k"] > 0.7


def test_refit_when_the_reweighted_ess_is_below_the_diagnostics_threshold():
    post = _draws(np.random.default_rng(3), n_chains=2, n_draws=300)  # 600 draws
    log_ratio = xr.DataArray(2 * np.log(post["rate_before"]).to_numpy(), dims=SAMPLE)
    node = _alternatives(post).result("few", lambda: log_ratio, _refit())
    assert _refitted(node) and "ESS" in node.attrs["refit_reason"]
    assert node.attrs["pareto_k"] <= 0.7  # the weights are fine: too few of them count


def test_no_refit_for_ess_when_the_main_fit_fails_its_own_diagnostics():
    """Too few draws in the main fit (it fails the ESS rule itself, so the run fails): a
    refit could not change the verdict, so a reweighted result with too small an ESS stays
    (and fails the diagnostics in its turn); a large k still refits."""
    post = _draws(np.random.default_rng(5), n_chains=2, n_draws=150)  # 300 draws < 400
    main = _alternatives(post)
    assert not main.main_passes
    mild = xr.DataArray(np.log(post["rate_before"]).to_numpy(), dims=SAMPLE)
    node = main.result("few", lambda: mild, _refit())
    assert not _refitted(node) and node.attrs["method"] == "reweighted"
    from model.reweight import check

    assert any("reweighted bulk ESS" in f for f in check(node, "reading: x")["failures"])
    z = (np.log(post["rate_before"]) - 2.5) / 0.4
    far = xr.DataArray(3.0 * z.to_numpy() ** 2, dims=SAMPLE)
    node = main.result("far", lambda: far, _refit())
    assert _refitted(node) and node.attrs["method"] == "refit"


def test_equal_weights_give_the_plain_quantiles_and_an_mcse():
    rng = np.random.default_rng(4)
    x = xr.DataArray(rng.normal(size=(4, 1000)), dims=SAMPLE)
    log_w = xr.full_like(x, -np.log(x.size))
    out = interval_summary(x, log_w, "-", "", (0.5, 0.95), (0.025, 0.5))
    assert out["median"] == pytest.approx(float(np.median(x)), abs=0.01)
    lo, hi = out["intervals"]["0.95"]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(x, [0.025, 0.975])), abs=0.02)
    # MCSE of the median of 4000 independent N(0, 1) draws: sqrt(pi / 2 / 4000) = 0.0198
    assert out["mcse"]["0.5"] == pytest.approx(0.0198, rel=0.25)


def test_prior_density_is_the_model_prior_under_the_given_parameters(small_fit):
    """The prior ratio of a scenario comes from the model's own distributions with the
    scenario's parameters: here the export share's Beta(4, 2) against Beta(2, 2)."""
    from model import load_case
    from model.build import build_model
    from model.priors import resolve_priors

    case = load_case(CASE)
    model = build_model(case, resolve_priors(case))
    density = PriorDensity(model)
    post = small_fit["posterior"].to_dataset()
    base = {v.name: v.get_value() for v in model.data_vars}
    alt = {**base, "prior__export_share__alpha": 2.0, "prior__export_share__beta": 2.0}
    ratio = (density(post, alt) - density(post, base)).to_numpy()
    share = post["export_share"].to_numpy()
    expected = stats.beta(2, 2).logpdf(share) - stats.beta(4, 2).logpdf(share)
    np.testing.assert_allclose(ratio, expected, rtol=1e-9, atol=1e-9)


def test_prior_density_loaded_from_the_compile_cache_is_the_compiled_one(
    small_fit, tmp_path, monkeypatch
):
    """A second estimate loads the prior density's rewritten graph (model/compiled.py)
    instead of rewriting it: the ratios are the freshly compiled function's, bit for bit."""
    from pytensor.compile.maker import FunctionMaker

    from model import compiled, load_case
    from model.build import build_model
    from model.priors import resolve_priors

    monkeypatch.setattr(compiled, "_folder", lambda: tmp_path)
    case = load_case(CASE)
    post = small_fit["posterior"].to_dataset()
    values = []
    for _ in range(2):  # two builds of the model, as two processes would
        model = build_model(case, resolve_priors(case))
        base = {v.name: v.get_value() for v in model.data_vars}
        alt = {**base, "prior__export_share__alpha": 2.0, "prior__export_share__beta": 2.0}
        density = PriorDensity(model)
        values.append((density(post, alt) - density(post, base)).to_numpy())
        if not values[1:]:  # the first compiled and wrote it; the second must not compile
            monkeypatch.setattr(FunctionMaker, "__init__", _no_compile)
    np.testing.assert_array_equal(values[0], values[1])


def _no_compile(*args, **kwargs):
    raise AssertionError("compiled again: the cache was not used")


@pytest.fixture(scope="module")
def refitted_case():
    """The February 11 case refitted everywhere (the design before reweighting and moment
    matching): one fit shared by the two tests that compare those with its refits."""
    from model import load_case
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    case = load_case(CASE)
    priors = resolve_priors(case)
    settings = SamplerSettings(draws=1000, tune=1000, chains=2, prior_draws=100)
    return case, priors, fit(case, priors, settings, reweight=False)


@pytest.mark.slow(minutes=1.9)  # the shared refitted fit
def test_reweighted_readings_and_scenarios_match_their_refits(refitted_case):
    """The previous design refitted every reading and scenario; reweighting the main fit must
    give the same quantiles within Monte Carlo error (4 combined MCSEs)."""
    from model.build import build_model
    from model.fit import Alternatives, scenario_data, scenario_priors
    from model.reweight import reading_log_ratio
    from model.summary import INTERVALS, MCSE_QUANTILES, alternative_summary
    from model.timing import Stopwatch

    case, priors, refitted = refitted_case
    post = refitted["posterior"].to_dataset()
    targets = {
        f"conditional/{r}": reading_log_ratio(post, r) for r in refitted["conditional"].children
    }
    model = build_model(case, priors)
    defaults = {v.name: v.get_value() for v in model.data_vars}
    main = Alternatives(refitted, model, defaults, Stopwatch())
    for name in refitted["scenarios"].children:
        alt, _, alt_mix = scenario_priors(case, priors, name)
        targets[f"scenarios/{name}"] = main.prior_log_ratio(scenario_data(alt, alt_mix))
    compared = 0
    for path, log_ratio in targets.items():
        weights = psis(log_ratio)
        if weights.pareto_k > 0.7:
            continue  # fit() would refit: nothing to compare
        for q in ("rate_before", "rate_after", "capacity_multiplier"):
            w = interval_summary(post[q], weights.log_weight, "", "", INTERVALS, MCSE_QUANTILES)
            r = alternative_summary(refitted[path].to_dataset(), "u")[q]
            for p, lo_hi in ((0.1, 0), (0.9, 1)):
                se = np.hypot(w["mcse"][str(p)], r["mcse"][str(p)])
                a, b = w["intervals"]["0.8"][lo_hi], r["intervals"]["0.8"][lo_hi]
                assert abs(a - b) <= 4 * se, (path, q, p, a, b, se)
            se = np.hypot(w["mcse"]["0.5"], r["mcse"]["0.5"])
            assert abs(w["median"] - r["median"]) <= 4 * se, (path, q, w["median"], r["median"])
            compared += 1
    assert compared >= 3 * 6  # most readings and scenarios reweight on this case


@pytest.mark.parametrize(
    "method, said",
    [
        ("reweighted", ": the main fit reweighted"),
        ("reused", ": the previous run's refit, reweighted to this ledger"),  # model/reuse.py
    ],
)
def test_a_reweighted_reading_reaches_the_summary_diagnostics_and_report(small_fit, method, said):
    """What the user sees: a reading saved as weighted draws (the main fit's, or the previous
    run's refit's) has the weighted quantiles of those draws in summary.json, is held to the
    diagnostics' rules (this small fit has too few draws, so it fails them, saying why) and
    the report says how it was obtained, in its sentence and its Diagnostics table."""
    from model.report import report_blocks
    from model.reweight import reading_log_ratio, reweighted
    from model.summary import summarize

    tree = small_fit.copy()
    post = tree["posterior"].to_dataset()
    from model.fit import REFIT_VARS as names

    weights = psis(reading_log_ratio(post, "size_of"))
    node = reweighted(post, tree["sample_stats"]["diverging"], names, weights)
    if method == "reused":
        node.attrs.update(method="reused", reused_from="20261201T000000Z")
    tree["conditional/size_of"] = node
    summary = summarize(tree)
    row = next(r for r in summary["readings"] if r["reading"] == "size_of")
    assert row["method"] == method and row["pareto_k"] == pytest.approx(weights.pareto_k)
    x = post["rate_after"].transpose(*SAMPLE).to_numpy().ravel()
    w = np.exp(weights.log_weight.to_numpy().ravel())
    assert row["rate_after"]["median"] == pytest.approx(weighted_quantile(x, w, 0.5))
    fit = next(f for f in summary["diagnostics"]["fits"] if f["fit"] == "reading: size_of")
    assert fit["method"] == method and not fit["passed"]
    assert any("reweighted bulk ESS" in f for f in fit["failures"])  # 400 draws in all
    assert fit["min_ess_bulk"] < 400 and not summary["diagnostics"]["passed"]
    blocks = report_blocks(summary, tree)
    texts = [str(b[1]) for b in blocks if b[0] == "p"]
    sentence = next(t for t in texts if t.startswith("How each row") and "size_of" in t)
    assert "size_of" in sentence.split(said)[0]
    table = next(b for b in blocks if b[0] == "table" and "min bulk ESS" in b[1])
    drawn = {r[0]: r[1] for r in table[2]}
    assert drawn["mixture"] == "sampled"
    want = "reused (run 20261201T000000Z)" if method == "reused" else "reweighted"
    assert drawn["reading: size_of"] == want
    if method == "reused":
        assert row["reused_from"] == "20261201T000000Z"


def test_a_reading_the_main_fit_gives_no_weight_is_refitted():
    post = _draws(np.random.default_rng(6))
    never = xr.DataArray(np.full((4, 1000), -np.inf), dims=SAMPLE)  # log(0) responsibility
    node = _alternatives(post).result("weight 0", lambda: never, _refit())
    assert _refitted(node) and "Pareto k inf" in node.attrs["refit_reason"]


@pytest.mark.slow(minutes=0.5)  # moment matching only: the fit is refitted_case's
def test_moment_matched_results_equal_their_refits_on_the_case(refitted_case):
    """The February 11 case refitted everywhere (the design before reweighting): each row,
    source and scenario that PSIS could not reach, moment matched from the same main fit
    instead, gives the refit's median and 10% / 90% quantiles within 4 combined MCSEs; and a
    target no move of the draws reaches (every row left out: the prior) is refitted."""
    from model.build import build_model, prior_data, prior_families
    from model.fit import Alternatives, Refit, scenario_priors
    from model.summary import alternative_summary
    from model.timing import Stopwatch

    case, priors, refitted = refitted_case
    model = build_model(case, priors)
    defaults = {v.name: v.get_value() for v in model.data_vars}
    main = Alternatives(refitted, model, defaults, Stopwatch())
    weights = refitted["constant_data"]["reading_weight"].to_numpy()
    targets = []
    for group in ("influence_refits", "source_refits"):
        for name, node in refitted[group].children.items() if group in refitted else ():
            ids = refitted["posterior"]["obs"].to_numpy()
            left = [str(i) for i in node["obs"].to_numpy()] if "obs" in node.dims else [name]
            row_weight = (~np.isin(ids, left)).astype(float)
            keep = tuple(left) if group == "source_refits" else ()
            data = {"row_weight": row_weight}
            targets.append(Refit(f"{group}/{name}", name, weights, data, keep))
    for name in case.scenarios:
        alt, _, alt_mix = scenario_priors(case, priors, name)
        if prior_families(alt) == prior_families(priors):
            data = prior_data(alt, alt_mix)
            targets.append(Refit(f"scenarios/{name}", name, alt_mix.weights, data))
    matched = 0
    for target in targets:
        node = main.moment_matched(target)
        if isinstance(node, Refit):
            continue
        a = alternative_summary(node, "u")
        b = alternative_summary(refitted[target.node].to_dataset(), "u")
        for q in ("rate_before", "rate_after", "capacity_multiplier"):
            for p, pick in ((0.1, 0), (0.9, 1)):
                se = np.hypot(a[q]["mcse"][str(p)], b[q]["mcse"][str(p)])
                x, y = a[q]["intervals"]["0.8"][pick], b[q]["intervals"]["0.8"][pick]
                assert abs(x - y) <= 4 * se, (target.node, q, p, x, y, se)
            se = np.hypot(a[q]["mcse"]["0.5"], b[q]["mcse"]["0.5"])
            assert abs(a[q]["median"] - b[q]["median"]) <= 4 * se, (target.node, q)
        matched += 1
    assert matched >= 1
    nothing = np.zeros(refitted["posterior"].sizes["obs"])
    prior = main.moment_matched(Refit("x", "every row left out", weights, {"row_weight": nothing}))
    assert isinstance(prior, Refit) and "moment_matching" in prior.attrs


def test_the_report_says_how_each_reading_or_scenario_was_obtained():
    """The sentence under the readings and scenarios tables names every method a row can
    have, the previous run's refit (model/reuse.py) among them, and why a row was refitted."""
    from model.reweight import how_obtained

    rows = [
        {"scenario": "a", "method": "reweighted"},
        {"scenario": "b", "method": "moment matched"},
        {"scenario": "c", "method": "reused", "reused_from": "20261201T000000Z"},
        {"scenario": "d", "method": "refit", "refit_reason": "Pareto k 0.91 > 0.7"},
    ]
    text = how_obtained(rows, "scenario")
    assert "a: the main fit reweighted" in text
    assert "b: the main fit's draws moved by importance-weighted moment matching" in text
    assert "c: the previous run's refit, reweighted to this ledger" in text
    assert "d: refitted (Pareto k 0.91 > 0.7)" in text


def test_a_reweighted_result_is_checked_on_what_every_fit_is_checked_on():
    """reweight.check holds a reweighted, moment-matched or reused result to the rules of a
    fit on its quantities, not on the left-out rows' predictions (reweight.ROW_PREDICTIONS),
    which no fit's rules cover; a random walk (ESS far under 400) fails it where it counts."""
    from model.reweight import LOG_WEIGHT, check

    rng = np.random.default_rng(5)
    white = rng.normal(size=(4, 1000))
    walk = np.cumsum(rng.normal(size=(4, 1000)), axis=1)  # bulk ESS in the tens
    dims = ("chain", "draw")

    def node(rate_after, predicted):
        ds = xr.Dataset(
            {
                "rate_after": (dims, rate_after),
                "predicted": (("chain", "draw", "obs"), predicted[..., None]),
                "diverging": (dims, np.zeros((4, 1000), bool)),
                LOG_WEIGHT: (dims, np.full((4, 1000), -np.log(4000))),
            }
        )
        ds.attrs["pareto_k"] = 0.0
        return ds

    assert check(node(white, walk), "source left out")["passed"]
    failed = check(node(walk, white), "source left out")
    assert not failed["passed"] and any("bulk ESS" in f for f in failed["failures"])
