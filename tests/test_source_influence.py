"""Leave-one-source-out influence: a ledger that rests on one office's figures warns, and fails
when the rest of the ledger contradicts that office. The fits here are exact (a normal model of
log(1 + flow) with a conjugate posterior), so the expected shifts are known without sampling;
the real case's fit is checked in the slow tier (tests/test_checks.py)."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from model.checks import (
    FAIL,
    PASS,
    SOURCE_FAIL_SD,
    SOURCE_WARN_SD,
    WARN,
    _slug,
    source_groups,
    source_influence_check,
    sources_to_refit,
)

PRIOR_MEAN, PRIOR_SD = 2.0, 2.0  # log(1 + flow): a vague prior, as the case's
GRADE_SD = {"A": 0.10, "B": 0.20, "C": 0.35}  # data/priors.toml [measurement.noise]


def posterior(rows):
    """Mean and sd of log(1 + flow) given exact rows (value, grade)."""
    precision = 1 / PRIOR_SD**2 + sum(1 / GRADE_SD[g] ** 2 for _, g in rows)
    mean = PRIOR_MEAN / PRIOR_SD**2 + sum(np.log1p(v) / GRADE_SD[g] ** 2 for v, g in rows)
    return mean / precision, precision**-0.5


def draws_of(mean, sd, rng, shape=(4, 1000)):
    """The quantities the check measures, from draws of log(1 + flow)."""
    m = rng.normal(mean, sd, shape)
    flow = np.expm1(m)
    multiplier = rng.lognormal(0.5, 0.3, shape)  # decided by its prior, not the evidence
    rate_before = flow / 0.6
    dims = ("chain", "draw")
    return m, {
        "exported_flow": (dims, flow),
        "rate_before": (dims, rate_before),
        "rate_after": (dims, rate_before * multiplier),
        "capacity_multiplier": (dims, multiplier),
    }


def ledger_fit(rows, refit_without=(), seed=1):
    """A saved fit of `rows` (id, source, bias_group, value, grade), in the layout fit() writes,
    with exact refits without each source named in `refit_without`."""
    rng = np.random.default_rng(seed)
    ids = [r[0] for r in rows]
    values = np.log1p([r[3] for r in rows])
    sds = np.array([GRADE_SD[r[4]] for r in rows])
    m, quantities = draws_of(*posterior([(r[3], r[4]) for r in rows]), rng)
    predicted = np.repeat(np.expm1(m)[..., None], len(rows), -1)
    dims = ("chain", "draw", "obs")
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {
                    **quantities,
                    "predicted": (dims, predicted),
                    "measurement_sd": (dims, np.broadcast_to(sds, predicted.shape)),
                },
                coords={"obs": ids},
            ),
            "log_likelihood": xr.Dataset(
                {"evidence": (dims, stats.norm.logpdf(values, m[..., None], sds))},
                coords={"obs": ids},
            ),
            "observed_data": xr.Dataset({"evidence": ("obs", values)}, coords={"obs": ids}),
            "constant_data": xr.Dataset(
                {
                    "kind": ("obs", ["launches"] * len(rows)),
                    "lower": ("obs", values - 1),
                    "upper": ("obs", values + 1),
                    "exact": ("obs", np.ones(len(rows))),
                },
                coords={"obs": ids},
            ),
            "evidence": xr.Dataset(
                {
                    "source": ("row", np.array([r[1] for r in rows], dtype=object)),
                    "bias_group": ("row", np.array([r[2] for r in rows], dtype=object)),
                },
                coords={"row": np.array(ids, dtype=object)},
            ),
        }
    )
    for name in refit_without:
        rest = [(r[3], r[4]) for r in rows if r[2] != name]
        kept = [r[0] for r in rows if r[2] == name]
        m, quantities = draws_of(*posterior(rest), rng)
        node = xr.Dataset(quantities)
        node["predicted"] = (dims, np.repeat(np.expm1(m)[..., None], len(kept), -1))
        node["measurement_sd"] = (dims, np.broadcast_to(GRADE_SD["B"], node["predicted"].shape))
        node = node.assign_coords(obs=kept)
        tree[f"source_refits/{_slug(f'bias group {name}')}"] = node
    return tree


# Four monthly counts from one office (military intelligence, grade B) and single counts from
# three outlets (grade C) that quote other offices, all of one flow's months.
OTHERS = [
    ("launches-outlet-a", "Outlet A", "", 10, "C"),
    ("launches-outlet-b", "Outlet B", "", 11, "C"),
    ("launches-outlet-c", "Outlet C", "", 9, "C"),
]


def office(value):
    return [(f"launches-hur-{i}", f"HUR briefing {i}", "hur", value, "B") for i in range(4)]


def test_rows_of_one_bias_group_are_one_source_and_other_rows_go_by_their_source():
    tree = ledger_fit([*office(10), *OTHERS, ("launches-outlet-a2", "Outlet A", "", 11, "C")])
    groups = source_groups(tree)
    assert groups["bias group hur"] == [f"launches-hur-{i}" for i in range(4)]
    assert groups["Outlet A"] == ["launches-outlet-a", "launches-outlet-a2"]
    assert len(groups) == 4


def test_sources_that_agree_pass():
    # The office's four counts carry most of the information even when they agree, so PSIS
    # cannot leave them out and fit() refits without them.
    result = source_influence_check(ledger_fit([*office(10), *OTHERS], refit_without=["hur"]))
    assert result["status"] == PASS, result["finding"]
    assert all(e["max_shift"] <= SOURCE_WARN_SD for e in result["sources"].values())


def test_a_ledger_resting_on_one_office_warns():
    # The office's four counts are the only precise figures: the others are one loose outlet.
    rows = [*office(30), ("launches-outlet-a", "Outlet A", "", 25, "C")]
    tree = ledger_fit(rows, refit_without=["hur"])
    result = source_influence_check(tree)
    hur = result["sources"]["bias group hur"]
    assert hur["status"] == WARN and result["status"] == WARN, result["finding"]
    assert SOURCE_WARN_SD < hur["max_shift"] and not hur["disagrees"]
    assert "rests on one source: bias group hur" in result["finding"]


def test_an_office_the_rest_contradicts_fails():
    # The office reports three times what three other outlets do: it decides the estimate
    # (leaving it out moves the flow by several sd) and the rest make its counts improbable.
    tree = ledger_fit([*office(30), *OTHERS], refit_without=["hur"])
    assert list(sources_to_refit(tree)) == ["bias-group-hur"]  # PSIS cannot leave it out
    result = source_influence_check(tree)
    hur = result["sources"]["bias group hur"]
    assert hur["method"] == "refit" and hur["max_shift"] > SOURCE_FAIL_SD and hur["disagrees"]
    assert result["status"] == FAIL and "contradicts" in result["finding"]


def test_a_source_psis_cannot_leave_out_and_nobody_refit_warns():
    result = source_influence_check(ledger_fit([*office(30), *OTHERS]))
    assert result["sources"]["bias group hur"]["method"] == "unresolved"
    assert result["status"] == WARN and "not left out reliably" in result["finding"]


@pytest.mark.parametrize("value", [10, 30])
def test_psis_shift_matches_the_exact_refit_when_k_is_small(value):
    """One outlet left out: PSIS's shift equals the exact conjugate one to Monte Carlo error."""
    rows = [*office(value), *OTHERS]
    result = source_influence_check(ledger_fit(rows))
    entry = result["sources"]["Outlet B"]
    assert entry["method"] == "psis"
    full_mean, full_sd = posterior([(r[3], r[4]) for r in rows])
    rest_mean, _ = posterior([(r[3], r[4]) for r in rows if r[1] != "Outlet B"])
    # the flow is expm1 of a normal: its median moves by expm1 of the mean's move
    exact = (np.expm1(rest_mean) - np.expm1(full_mean)) / ledger_fit(rows)["posterior"][
        "exported_flow"
    ].std().item()
    assert entry["shifts"]["exported_flow"] == pytest.approx(exact, abs=0.1)
    assert full_sd > 0
