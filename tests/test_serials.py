"""Serial numbers (model/serials.py) against the closed-form posterior of Höhle & Held (2006),
"Bayesian estimation of the size of a population": k serials drawn without replacement from
1..N, improper uniform prior on N. The posterior is p(n) = (k-1)/k C(m-1, k-1) / C(n, k) for
n >= m (m the largest serial), with mean (m-1)(k-1)/(k-2)."""

from __future__ import annotations

import csv

import numpy as np
import pymc as pm
import pytest
from scipy.special import gammaln

from model import InputError, load_case
from model.serials import made_between, serial_logp, serial_rows, wall_width
from tests.conftest import HEADER, ROOT, graph_text

K, N_TRUE, SEED = 10, 400, 11
# the columns of the February 11 ledger, plus `block`: the ledgers these tests write
SERIAL_HEADER = HEADER.split(",") + ["supersedes", "used", "same_as", "bias_group", "block"]


def hoehle_held(m: int, k: int, n_max: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Discrete posterior pmf on n = m..n_max (the tail beyond holds < 1e-30 for k = 10)."""
    n = np.arange(m, n_max + 1)
    log_choose = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    log_const = np.log((k - 1) / k) + gammaln(m) - gammaln(k) - gammaln(m - k + 1)
    return n, np.exp(log_const - log_choose)


@pytest.fixture(scope="module")
def serials():
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(np.arange(1, N_TRUE + 1), size=K, replace=False))


@pytest.fixture(scope="module")
def posterior(serials):
    """Population size under the serial likelihood with a flat prior on N > 0: the soft walls
    (model/serials.py) stand for the support n >= m, as in the case model; sampled with nutpie
    as the case model is."""
    import nutpie

    with pm.Model() as model:
        size = pm.HalfFlat("size")
        ll = serial_logp(size, 0.0, np.arange(K), serials, wall_width(K))
        pm.Potential("serials", ll.sum())
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    tree = nutpie.sample(
        compiled, draws=4000, tune=1000, chains=4, cores=2, seed=SEED, progress_bar=False
    )
    return tree["posterior"]["size"]


def test_closed_form_is_a_distribution_with_the_known_mean(serials):
    m = int(serials.max())
    n, p = hoehle_held(m, K)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert (n * p).sum() == pytest.approx((m - 1) * (K - 1) / (K - 2), rel=1e-9)


def test_midpoint_relaxation_matches_the_discrete_posterior(serials):
    """The continuous density, integrated over each cell [n - 1/2, n + 1/2), gives the
    discrete pmf to second order: checked by quadrature, so that any larger gap in the next
    test is the sampler's or the code's, not the relaxation's."""
    m = int(serials.max())
    n, p = hoehle_held(m, K)
    x = np.linspace(m - 0.5, m + 20_000, 4_000_001)
    log_f = -sum(np.log(x - j) for j in range(K))
    f = np.exp(log_f - log_f.max())
    dx = x[1] - x[0]
    f /= f.sum() * dx
    mean_rounded = (np.round(x) * f).sum() * dx
    assert abs(mean_rounded - (n * p).sum()) < 0.05  # items; MC error below is ~1


def test_sampled_posterior_matches_hoehle_held_within_monte_carlo_error(serials, posterior):
    import arviz as az

    m = int(serials.max())
    n, p = hoehle_held(m, K)
    rounded = np.round(posterior)
    ess = float(az.ess(rounded, method="mean"))
    mcse = float(az.mcse(rounded, method="mean"))
    exact_mean = (m - 1) * (K - 1) / (K - 2)
    # 4 MCSE: a correct sampler fails this about once in 16,000 runs (normal tails).
    assert abs(float(rounded.mean()) - exact_mean) < 4 * mcse
    cdf = np.cumsum(p)
    draws = rounded.to_numpy().ravel()
    for q in (0.1, 0.5, 0.9):
        point = n[np.searchsorted(cdf, q)]
        exact = cdf[point - m]
        sampled = np.mean(draws <= point)
        # binomial standard error with the effective sample size, 4 of them
        assert abs(sampled - exact) < 4 * np.sqrt(exact * (1 - exact) / ess), q
    # Sanity line: the classical unbiased estimator m + m/k - 1 sits in the posterior bulk.
    classical = m + m / K - 1
    assert np.quantile(draws, 0.25) < classical < np.quantile(draws, 0.75)


def test_beyond_the_walls_the_density_falls_relative_to_the_serial():
    import pytensor.tensor as pt

    width = wall_width(10)  # a block with 10 distinct items seen
    assert width == pytest.approx(0.005)

    def logp(made, before, needed):
        made, before = pt.as_tensor(np.array(made)), pt.as_tensor(np.array(before))
        return serial_logp(made, before, np.zeros(len(needed)), np.array(needed), width).eval()

    # Well inside the walls (n >= needed is N >= needed - 1/2): 1 / candidates, no wall term.
    inside = logp([120.0, 40_000.0], [0.0, 10_000.0], [100.0, 30_000.0])
    assert inside == pytest.approx(-np.log([120.0, 30_000.0]))
    # The same relative shortfall costs the same at any scale: at the midpoint (one width
    # beyond where the wall starts) 1 nat, two widths beyond it 2 nats, at 300 items (3 items
    # a width) as at 30,000 (300 items). A half-item wall cost 2 nats for a single item short
    # at 30,000, a cliff in a posterior thousands of items wide.
    for count in (300.0, 30_000.0):
        proven = count - 0.5
        assert logp([proven], [0.0], [count])[0] == pytest.approx(-np.log(proven) - 1.0)
        short = proven * (1 - width)
        assert logp([short], [0.0], [count])[0] == pytest.approx(-np.log(short) - 2.0)
        assert logp([0.5 * proven], [0.0], [count])[0] < -100  # far short: impossible
    # A serial numbered before the item could be exported (`before`: items made before
    # exports began): the lower wall, the same shape from the other side.
    early = logp([600.0], [299.5 * (1 + width)], [300.0])[0]
    assert early == pytest.approx(-np.log(600.0 - 299.5 * (1 + width)) - 2.0)


def test_items_made_is_the_production_path_integrated_and_moves_with_the_end():
    """made_between integrates the monthly path (month m spans [m, m + 1)) and its gradient in
    the end time is the rate of the month the end falls in: the clock is differentiable in
    use_lag, which enters through the end."""
    import pytensor
    import pytensor.tensor as pt

    production = pt.as_tensor(np.array([10.0, 20.0, 30.0, 40.0]))
    end = pt.vector("end")
    made = made_between(np.array([0.0, 1.0, 0.0]), end, production)
    f = pytensor.function([end], [made, pt.grad(made.sum(), end)])
    values, slopes = f(np.array([2.5, 3.25, -1.0]))
    # 10 + 20 + half of 30; from month 1: 20 + 30 + a quarter of 40; before the start: none
    assert values.tolist() == pytest.approx([45.0, 60.0, 0.0])
    assert slopes.tolist() == pytest.approx([30.0, 40.0, 0.0])


def _case_with_serials(case_copy, rows: list[str], blocks: str = "") -> None:
    toml = case_copy / "case.toml"
    toml.write_text(toml.read_text() + blocks)
    ledger = case_copy / "evidence.csv"
    with ledger.open(newline="") as f:
        table = list(csv.reader(f))
    with ledger.open("w", newline="") as f:
        csv.writer(f).writerows(
            [[*line, "block" if i == 0 else ""] for i, line in enumerate(table)]
        )
    with ledger.open("a") as f:
        f.write("\n".join(rows) + "\n")


def _header_and_area() -> list[str]:
    """A synthetic serial case's ledger header and its one floor-area row (ratio 1.45-1.55)."""
    area = dict.fromkeys(SERIAL_HEADER, "") | {
        "id": "area", "kind": "area_ratio", "period_end": "2023-06-01", "lower": "1.45",
        "upper": "1.55", "bound": "between", "unit": "ratio", "reading": "only",
        "source": "Synthetic", "url": "https://example.org/s", "date_reported": "2023-07-01",
        "reliability": "B", "quote": "synthetic",
    }  # fmt: skip
    return [",".join(SERIAL_HEADER), ",".join(area[c] for c in SERIAL_HEADER)]


def _serial_row(id_, serial, date, block=""):
    # the columns of the February 11 ledger, plus `block` (added by _case_with_serials)
    header = SERIAL_HEADER
    cells = dict.fromkeys(header, "")
    cells |= {
        "id": id_, "kind": "serial", "period_end": date, "value": str(serial), "bound": "exact",
        "unit": "serial", "source": "Synthetic test", "url": "https://example.org/s",
        "date_reported": date, "reliability": "B", "quote": "serial seen", "block": block,
    }  # fmt: skip
    return ",".join(cells[c] for c in header)


def serial_only_case(folder, serials, date="2024-12-31", rate_median=15.0, exports="2023-01"):
    """A SYNTHETIC case (invented numbers) whose only measured rows are serial sightings, all
    on `date`: two years of a plant whose prior rate is centred on `rate_median` a month. The
    one area_ratio row only defines the reading the model needs; it is not a measured row."""
    folder.mkdir(parents=True)
    (folder / "case.toml").write_text(
        '# SYNTHETIC test case: invented numbers.\nid = "serials-only"\n'
        'title = "Synthetic plant seen through serials only"\nunit = "units"\n'
        'evidence = "evidence.csv"\n[window]\nstart = "2023-01"\nend = "2024-12"\n'
        f'[exports]\nstart = "{exports}"\n'
        '[area_ratio]\nrationale = "Synthetic."\n[area_ratio.weights]\nonly = 1.0\n'
        f'[priors.rate_before]\ndist = "LogNormal"\nmedian = {rate_median}\nsigma = 1.2\n'
        'source = "case"\nrationale = "Synthetic: the scale of the serials."\n'
        '[priors.completion]\ndist = "Uniform"\nlower = "2023-10"\nupper = "2024-02"\n'
        'source = "case"\nrationale = "Synthetic."\n[serials.main]\nfirst = 1\n'
    )
    lines = _header_and_area()
    lines += [_serial_row(f"serial-{j:02d}", int(s), date, "main") for j, s in enumerate(serials)]
    (folder / "evidence.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_a_sighting_counts_the_items_exported_and_made_by_its_date_less_the_lag(tmp_path):
    """Exports begin in month 6 (2023-07) of a block that starts in month 0; an item seen at
    the end of 2024-06 (t = 18) was made by 18 - use_lag and exported, so it is one of the
    P(18 - use_lag) - P(6) items made in between (P: the block's production to date). The
    model's log-likelihood, drawn from the prior, is -log of that count wherever the serial
    fits inside it."""
    from model.build import build_model
    from model.priors import resolve_priors

    case = load_case(serial_only_case(tmp_path / "c", [100], "2024-06-30", exports="2023-07"))
    model = build_model(case, resolve_priors(case))
    names = ["production", "use_lag", "log_likelihood__serials"]
    production, lag, ll = pm.draw([model[n] for n in names], draws=300, random_seed=3,
                                  mode="FAST_RUN")  # fmt: skip
    made_to = np.concatenate([np.zeros((300, 1)), np.cumsum(production, axis=1)], axis=1)

    def items_made_by(t):  # the monthly path integrated from month 0 to t, per draw
        t = np.maximum(t, 0.0)  # none before the block's start
        month = np.floor(t).astype(int)
        return made_to[np.arange(300), month] + (t - month) * production[np.arange(300), month]

    count = items_made_by(18.0 - lag) - made_to[:, 6]
    # where the serial is possible, clear of the soft walls (model/serials.py)
    clear = 99.5 * wall_width(1)
    inside = (made_to[:, 6] <= 99.5 - clear) & (items_made_by(18.0 - lag) >= 99.5 + clear)
    assert inside.sum() > 30
    assert ll[inside, 0] == pytest.approx(-np.log(count[inside]), rel=1e-6)
    candidates = pm.draw(model["serial_candidates"], draws=300, random_seed=3, mode="FAST_RUN")
    assert candidates[:, 0] == pytest.approx(count, rel=1e-6)


def test_the_prior_predictive_check_passes_a_case_with_no_measured_rows():
    """Serial sightings are a Potential, outside the prior predictive: with no other measured
    row there is nothing to check (it used to fail: 'cannot reshape array of size 0')."""
    import xarray as xr

    from model.checks import prior_predictive_check

    empty = np.zeros((1, 5, 0))
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"predicted": (("chain", "draw", "obs"), empty)}),
            "prior_predictive": xr.Dataset({"evidence": (("chain", "draw", "obs"), empty)}),
            "observed_data": xr.Dataset({"evidence": ("obs", np.zeros(0))}),
            "constant_data": xr.Dataset(
                {k: ("obs", np.zeros(0)) for k in ("lower", "upper", "exact", "kind")}
            ),
        }
    )
    check = prior_predictive_check(tree)
    assert check["status"] == "pass" and check["flagged"] == []


def test_blocks_duplicates_and_order(case_copy):
    blocks = '\n[serials.y2024]\nstart = "2024-01"\nend = "2024-12"\nfirst = 1\n'
    blocks += '\n[serials.y2025]\nstart = "2025-01"\nfirst_lower = 0\n'
    rows = [
        _serial_row("serial-a", 40, "2024-06-10", "y2024"),
        _serial_row("serial-b", 12, "2024-03-01", "y2024"),
        _serial_row("serial-c", 40, "2024-07-01", "y2024"),  # the same item, seen again
        _serial_row("serial-d", 505, "2025-05-01", "y2025"),
    ]
    _case_with_serials(case_copy, rows, blocks)
    s = serial_rows(load_case(case_copy))
    assert s.ids == ["serial-b", "serial-a", "serial-c", "serial-d"]  # by block, then date
    assert s.order.tolist() == [0, 1, 2, 0]
    assert s.duplicate_of == ["", "", "serial-a", ""]
    assert s.weight.tolist() == [1, 1, 0, 1]
    assert [b.first for b in s.blocks] == [1.0, None]
    # model time (months from the window's start, 2023-03) of the end of the sighting's day,
    # and the blocks' months: serial-b on 1 March 2024, in y2024 = 2024-01..12 = months 10..22
    assert s.time[0] == pytest.approx(12 + 1 / 31)
    assert (s.block_start.tolist(), s.block_end.tolist()) == ([10, 10, 10, 22], [22, 22, 22, 34])
    assert s.seen.tolist() == [2, 2, 2, 1]  # distinct items seen in the row's block


def test_bad_serial_rows_name_file_row_and_column(case_copy):
    _case_with_serials(case_copy, [_serial_row("serial-x", 12.5, "2024-03-01", "nope")])
    with pytest.raises(InputError) as info:
        serial_rows(load_case(case_copy))
    text = str(info.value)
    assert "evidence.csv" in text and "serial-x" in text and "block" in text


def write_serial_plant(case):
    """The SYNTHETIC plant of the serial recovery test (invented numbers): its folder, the
    truth and the monthly production (also for benchmarks/profile_fit.py)."""
    from model.production import production_rate

    truth = {"rate_before": 12.0, "multiplier": 1.5, "completion": 12.0, "ramp": 20.0}
    months = np.arange(24) + 0.5
    made = production_rate(months, truth["rate_before"], truth["multiplier"],
                           truth["completion"], truth["ramp"]).eval()  # fmt: skip
    rng = np.random.default_rng(5)
    case.mkdir(parents=True)
    (case / "case.toml").write_text(
        '# SYNTHETIC test case: invented numbers.\nid = "serial-plant"\n'
        'title = "Synthetic plant with serials"\nunit = "units"\nevidence = "evidence.csv"\n'
        '[window]\nstart = "2023-01"\nend = "2024-12"\n[exports]\nstart = "2023-02"\n'
        '[area_ratio]\nrationale = "Synthetic."\n[area_ratio.weights]\nonly = 1.0\n'
        '[priors.completion]\ndist = "Uniform"\nlower = "2023-10"\nupper = "2024-02"\n'
        'source = "case"\nrationale = "Synthetic."\n[serials.main]\nfirst = 1\n'
    )
    lines = _header_and_area()
    seen: set[int] = set()
    made_to = np.concatenate([[0.0], np.cumsum(made)])  # items made by the start of each month
    exported_from = int(np.floor(made_to[1])) + 1  # January's items were not exported
    for j, month in enumerate(np.sort(rng.integers(6, 24, size=20))):
        # seen on the 28th: made by 4 months before it
        made_by = int(np.floor(np.interp(month + 27 / 30 - 4.0, np.arange(25), made_to)))
        serial = int(rng.choice(sorted(set(range(exported_from, made_by + 1)) - seen)))
        seen.add(serial)
        date = f"{2023 + month // 12}-{month % 12 + 1:02d}-28"
        lines.append(_serial_row(f"serial-{j:02d}", serial, date, "main"))
    # The last item reported again by a second outlet: the same item, adding nothing.
    lines.append(_serial_row("serial-again", serial, date, "main"))
    (case / "evidence.csv").write_text("\n".join(lines) + "\n")
    return case, truth, made


def _ridge_and_plain(tmp_path, monkeypatch, dates="one date"):
    """A case with serials seen on one date (4 of ~300) or on several (the serial plant: 20
    sightings on 14 dates and a duplicate), its model on the ridge coordinate as built ("largest"
    for one date; "capped", with use_lag on (0, lag_bound), for several) and as it was before
    (rate_before and use_lag on log scale): the same case and priors."""
    import model.build as build
    from model.priors import resolve_priors

    if dates == "one date":
        folder = serial_only_case(tmp_path / "c", [40, 180, 233, 290], rate_median=15.0)
    else:
        folder = write_serial_plant(tmp_path / "serial-plant")[0]
    case = load_case(folder)
    priors = resolve_priors(case)
    ridge = build.build_model(case, priors)
    monkeypatch.setattr(build, "POSITIVE_FAMILIES", ())  # no family goes on the ridge
    plain = build.build_model(case, priors)
    return ridge, plain, priors


@pytest.mark.filterwarnings("ignore:The effect of Potentials")
@pytest.mark.parametrize("dates", ["one date", "several dates"])
def test_rate_before_on_the_ridge_keeps_its_prior(tmp_path, monkeypatch, dates):
    """model/serials.py ("Geometry"): with serial rows rate_before is sampled as log(rate)
    less the serials' bound, but its prior is the one the case declares: its log density is
    the LogNormal's, and its prior draws (the prior predictive's) have the LogNormal's law.
    A wrong shift index in serials.ShiftedLog or a shift leaking into the density fails."""
    from scipy import stats

    ridge, plain, priors = _ridge_and_plain(tmp_path, monkeypatch, dates)
    assert "rate_before_ridge_log__" in [v.name for v in ridge.value_vars]
    assert "rate_before_log__" in [v.name for v in plain.value_vars]
    spec = priors["rate_before"]
    law = stats.lognorm(s=spec.params["sigma"], scale=spec.params["median"])
    x = np.array([0.5, 3.0, 12.0, 80.0])
    assert pm.logp(ridge["rate_before"], x).eval() == pytest.approx(law.logpdf(x), rel=1e-9)
    with ridge:
        draws = pm.sample_prior_predictive(draws=4000, var_names=["rate_before"],
                                           random_seed=2)["prior"]["rate_before"]  # fmt: skip
    assert stats.kstest(draws.to_numpy().ravel(), law.cdf).pvalue > 0.01


@pytest.mark.parametrize("dates", ["one date", "several dates"])
def test_the_ridge_coordinate_moves_only_the_sampler(tmp_path, monkeypatch, dates):
    """The joint log density (with Jacobians) of the ridge model at (others, log(rate) -
    shift) equals the plain model's at (others, log(rate)), at prior draws far apart: the
    change of coordinates has a unit Jacobian beyond the log's, so the posterior is the same.
    On several dates use_lag is also sampled on (0, lag_bound) (build.lag_transform): there
    the densities agree up to the two transforms' Jacobians, at draws below the bound."""
    import pytensor

    ridge, plain, _ = _ridge_and_plain(tmp_path, monkeypatch, dates)
    shift = ridge.replace_rvs_by_values([ridge["rate_before"].owner.inputs[1]])[0]
    shift_of = pytensor.function(ridge.value_vars, shift, on_unused_input="ignore")
    logp_ridge, logp_plain = ridge.compile_logp(), plain.compile_logp()
    lag = ridge["use_lag"]
    bound = ridge.rvs_to_transforms[lag]
    bounded = dates == "several dates"
    assert (ridge.rvs_to_values[lag].name == "use_lag_interval__") is bounded
    draws = pm.draw(plain.free_RVs, draws=40, random_seed=4)
    lags = draws[plain.free_RVs.index(plain["use_lag"])]
    upper = float(bound.args_fn(*lag.owner.inputs)[1]) if bounded else np.inf
    below = np.flatnonzero(lags < upper)[:6]
    assert len(below) == 6 and (not bounded or (lags > upper).any())  # some beyond it
    shifts = []
    for i in below:
        point, moved = {}, {}
        for rv, values in zip(plain.free_RVs, draws, strict=True):
            for m, out in ((plain, point), (ridge, moved)):
                own = m[rv.name]
                transform, value = m.rvs_to_transforms[own], values[i]
                if transform is not None and m.rvs_to_values[own].name != "rate_before_ridge_log__":
                    value = transform.forward(value, *own.owner.inputs).eval()
                out[m.rvs_to_values[own].name] = value
        moved["rate_before_ridge_log__"] = 0.0
        shifts.append(float(shift_of(**moved)))
        moved["rate_before_ridge_log__"] = point["rate_before_log__"] - shifts[-1]
        jacobians = 0.0
        if bounded:  # log(x (B - x) / B) for the interval, log(x) for the log
            x = lags[i]
            jacobians = np.log(x * (upper - x) / upper) - np.log(x)
        expected = logp_plain(point) + jacobians
        assert logp_ridge(moved) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert np.ptp(shifts) > 0.1  # the shift does depend on the other variables


def test_sightings_on_several_dates_take_the_capped_bound_and_it_is_right(tmp_path):
    """Sightings on several dates sample rate_before less the "capped" shift (build.ridge_rule)
    and use_lag on (0, lag_bound). The shifts that benchmarks/profile_fit.py --ridge measures:
    "max", the largest of every sighting's bound, and "capped", none more than RIDGE_CAP above
    the largest serial's: where an early sighting binds the shift is its bound, not the
    largest serial's; where an early sighting's bound soars (its item made just after the
    block's start), the cap holds it."""
    import pytensor.tensor as pt

    from model.build import build_model, ridge_rule
    from model.priors import resolve_priors
    from model.serials import RIDGE_CAP, log_bounds, ridge_shift

    case = load_case(write_serial_plant(tmp_path / "serial-plant")[0])
    serials = serial_rows(case)
    assert not serials.one_bound
    assert ridge_rule(serials, resolve_priors(case)) == "capped"
    names = [v.name for v in build_model(case, resolve_priors(case)).value_vars]
    assert {"rate_before_ridge_log__", "use_lag_interval__"} <= set(names)
    shape, first = pt.ones(24), np.ones(len(serials.ids))
    largest = np.argmax(serials.serial)
    for lag in (4.0, 7.0):
        # At rate 1 a month from month 0 an item seen at t was one of the t - lag made by
        # then: its bound is log((serial - first + 1/2) / (t - lag + floor)).
        made = np.clip(serials.time - lag, 0.0, None)
        expected = np.log(serials.serial - 0.5) - np.log(made + 1e-2)
        lag = pt.as_tensor(lag)
        assert log_bounds(serials, shape, lag, first).eval() == pytest.approx(expected)
        own = float(ridge_shift(serials, shape, lag, first, "largest").eval())
        assert own == pytest.approx(expected[largest])
        assert float(ridge_shift(serials, shape, lag, first, "max").eval()) == pytest.approx(
            expected.max()
        )
        shift = float(ridge_shift(serials, shape, lag, first, "capped").eval())
        assert shift == pytest.approx(min(expected.max(), expected[largest] + RIDGE_CAP))
        assert shift > own + 0.1  # an earlier sighting binds
    assert shift == pytest.approx(own + RIDGE_CAP)  # at lag 7 the earliest soars: capped


@pytest.mark.parametrize("asked", [0.8, 0.9, 0.99])
def test_sightings_on_several_dates_are_sampled_at_the_ridge_target_acceptance(tmp_path, asked):
    """The capped ridge's walls meet at angles where 0.9 diverged (serials.RIDGE_TARGET_ACCEPT):
    a model with that coordinate is sampled at no less, whoever builds its Sampler; a model
    on one date, or without serials, at what the fit asks. A higher request stands."""
    from model.build import build_model
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings, for_model
    from model.serials import RIDGE_TARGET_ACCEPT

    settings = SamplerSettings(target_accept=asked)
    several = load_case(write_serial_plant(tmp_path / "serial-plant")[0])
    one = load_case(serial_only_case(tmp_path / "c", [40, 180, 233, 290], rate_median=15.0))
    plain = load_case(ROOT / "data" / "cases" / "synthetic-plant")
    got = {
        name: for_model(build_model(case, resolve_priors(case)), settings).target_accept
        for name, case in (("several", several), ("one", one), ("plain", plain))
    }
    assert got == {"several": max(asked, RIDGE_TARGET_ACCEPT), "one": asked, "plain": asked}


def test_use_lag_stops_where_the_earliest_sighting_would_have_no_item_made(tmp_path):
    """serials.lag_bound: the earliest counted sighting's date less its block's start (the
    serial plant's five month-7 sightings, at t = 6.9 in a block from month 0). Beyond it that
    sighting's log-likelihood is a constant (its late wall, no item made: no gradient back to
    where the posterior is), below it the likelihood moves with the lag. A bound from a later
    sighting would cut posterior mass; one beyond the flat region would let chains stick
    (benchmarks/README.md, "Several dates"). use_lag's prior stays its own on both sides."""
    import pytensor.tensor as pt
    from scipy import stats

    from model.build import build_model, lag_transform
    from model.priors import resolve_priors
    from model.serials import candidates, lag_bound

    case = load_case(write_serial_plant(tmp_path / "serial-plant")[0])
    serials = serial_rows(case)
    bound = lag_bound(serials)
    assert bound == pytest.approx(min(serials.time) - 0.0) == pytest.approx(6 + 28 / 31)
    earliest = np.flatnonzero(serials.time == serials.time.min())
    production = pt.as_tensor(np.full(24, 12.0))

    def loglik(lag):
        made, before = candidates(serials, production, pt.as_tensor(lag), 1.0)
        ll = serial_logp(made, before, serials.order, serials.serial, wall_width(serials.seen))
        return ll.eval()[earliest]

    beyond = [loglik(bound + d) for d in (0.01, 0.5, 3.0)]
    assert np.ptp(beyond, axis=0) == pytest.approx(0.0, abs=1e-12)
    assert (beyond[0] < -100).all()  # no item made: far out on the late wall
    assert np.abs(loglik(bound - 0.2) - loglik(bound - 0.4)).min() > 1.0

    priors = resolve_priors(case)
    assert lag_transform(serials, None) == {} == lag_transform(serials, "largest")
    model = build_model(case, priors)
    lag = model["use_lag"]
    assert float(model.rvs_to_transforms[lag].args_fn(*lag.owner.inputs)[1]) == bound
    spec = priors["use_lag"]
    law = stats.lognorm(s=spec.params["sigma"], scale=spec.params["median"])
    x = np.array([0.5, 3.0, 6.0])
    assert pm.logp(lag, x).eval() == pytest.approx(law.logpdf(x), rel=1e-9)
    draws = pm.draw(lag, draws=4000, random_seed=2)  # forward draws: the prior predictive's
    assert (draws > bound).mean() > 0.1 and stats.kstest(draws, law.cdf).pvalue > 0.01


@pytest.mark.slow(minutes=1.3)
def test_a_plant_with_serials_recovers_its_production(tmp_path):
    """Synthetic plant (invented numbers): 12 a month, 1.5x after an expansion completed in
    month 12 with a 20-month ramp, exports from month 1, 4 months from making to use (the
    use_lag prior's median). 20 serials are seen over two years, each drawn uniformly from the
    items exported and made 4 months before its date and not seen before. The fit must cover
    the true rate and the true production, and the serials must narrow rate_before well
    inside its prior."""
    from model.fit import fit
    from model.priors import resolve_priors
    from model.report import write_report
    from model.sampler import SamplerSettings
    from model.summary import summarize

    case, truth, made = write_serial_plant(tmp_path / "serial-plant")
    loaded = load_case(case)
    priors = resolve_priors(loaded)
    settings = SamplerSettings(draws=1000, tune=1000, chains=4, prior_draws=2000)
    tree = fit(loaded, priors, settings, conditional=False, checks=False)
    post, prior = tree["posterior"], tree["prior"]
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    lo, hi = np.quantile(post["rate_before"], [0.025, 0.975])
    assert lo < truth["rate_before"] < hi
    total = post["production"].sum("month")
    lo, hi = np.quantile(total, [0.025, 0.975])
    assert lo < made.sum() < hi
    width = np.subtract(*np.quantile(post["rate_before"], [0.9, 0.1]))
    prior_width = np.subtract(*np.quantile(prior["rate_before"], [0.9, 0.1]))
    assert width < 0.25 * prior_width

    # The summary and the report carry the serials as their own evidence stream.
    summary = summarize(tree)
    assert summary["evidence"]["serial_duplicates"] == {"serial-again": "serial-19"}
    sensitivity = next(c for c in summary["checks"] if c["name"] == "prior sensitivity")
    assert "serials" in sensitivity["likelihood"]
    page = (write_report(tree, summary, tmp_path / "reports") / "report.md").read_text()
    assert "same item as serial-19" in page and "serial sighting" in page


def _closed_form_posterior(case, k: int, m: int, draws: int = 100_000):
    """The posterior of the block's count under the Höhle & Held likelihood 1 / (k! C(N, k))
    for N >= m and the prior the case's model induces on that count, by numerical
    integration over prior draws of it (importance weights = the closed-form likelihood of
    the rounded count). Returns the counts, their weights and the weights' effective size."""
    from model.build import build_model
    from model.priors import resolve_priors

    model = build_model(case, resolve_priors(case))
    count = pm.draw(model["serial_candidates"], draws=draws, random_seed=7, mode="FAST_RUN")
    n = np.round(count[:, -1])
    log_w = np.where(n >= m, -(gammaln(n + 1) - gammaln(n - k + 1)), -np.inf)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    return n, w, 1.0 / np.sum(w**2)


@pytest.mark.slow(minutes=5.5)
@pytest.mark.parametrize(
    ("scale", "k"),
    [(300, 10), (30_000, 1)],
    ids=["10-serials-of-300", "one-serial-of-30000"],
)
def test_a_serials_only_case_runs_clean_and_matches_the_closed_form(tmp_path, scale, k):
    """A SYNTHETIC case whose only measured rows are k serials seen on one date (the largest
    of 30,000 alone made 3,989 of 4,000 transitions diverge under a half-item wall), through
    `capest estimate` at its default draws: it must exit 0 (every check passes), without
    divergences, R-hat <= 1.01, and the block's count must have the closed-form German-tank
    posterior under the same prior (quantiles within Monte Carlo error)."""
    import json

    import arviz as az
    import xarray as xr

    from model.cli import main

    rng = np.random.default_rng(SEED)
    serials = np.sort(rng.choice(np.arange(1, scale + 1), size=k, replace=False))
    if k == 1:
        serials = np.array([scale])
    folder = serial_only_case(tmp_path / "case", serials, rate_median=scale / 20)
    reports = tmp_path / "reports"
    code = main(["estimate", str(folder), "--reports-dir", str(reports), "--no-conditional"])
    latest = reports / "serials-only" / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    assert code == 0, [c for c in summary["checks"] if c["status"] == "fail"]
    tree = xr.open_datatree(latest / "posterior.nc", engine="netcdf4")
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    rhat = az.rhat(tree["posterior"].to_dataset())
    assert max(float(v.max()) for v in rhat.data_vars.values() if v.size) <= 1.01

    count = np.round(tree["posterior"]["serial_candidates"].isel(serial=-1))
    ess = float(az.ess(count, method="bulk"))
    draws = count.to_numpy().ravel()
    n, w, ref_ess = _closed_form_posterior(load_case(folder), k, int(serials.max()))
    order = np.argsort(n)
    cdf = np.cumsum(w[order])
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        point = n[order][np.searchsorted(cdf, q)]  # the closed form's q-quantile
        exact = cdf[np.searchsorted(n[order], point, side="right") - 1]  # its cdf there
        sampled = np.mean(draws <= point)
        # binomial standard errors of both Monte Carlo estimates, 4 of them
        se = np.sqrt(exact * (1 - exact) * (1 / ess + 1 / ref_ess))
        assert abs(sampled - exact) < 4 * se, (q, point, sampled, exact)


@pytest.mark.parametrize("dates", ["one date", "several dates"])
def test_a_sighting_more_leaves_the_compiled_graph_as_it_was(tmp_path, dates):
    """The sightings are pm.Data (serials.SerialData), as the ledger's rows are: a sighting
    more, a duplicate, or another serial leave the graph, and so the disk caches' keys,
    unchanged, and the rerun loads the compiled model (as constants, a serial more was a cold
    compile). On several dates (the ridge rule "capped") too, for a sighting after the
    earliest (use_lag's bound, the earliest sighting's, is a constant: build.lag_transform)."""
    from model.build import ridge_rule
    from model.priors import resolve_priors

    def case(name, extra):
        folder = serial_only_case(tmp_path / name, [40, 75, 120])
        rows = extra if dates == "one date" else [_serial_row("s-mid", 90, "2024-06-30")] + extra
        with (folder / "evidence.csv").open("a") as f:
            f.write("".join(r + "\n" for r in rows))
        return load_case(folder)

    base = case("base", [])
    rule = ridge_rule(serial_rows(base), resolve_priors(base))
    assert rule == ("largest" if dates == "one date" else "capped")
    when = "2024-12-31" if dates == "one date" else "2024-09-30"
    variants = {
        "a sighting more": [_serial_row("s-more", 300, when)],
        "a duplicate": [_serial_row("s-again", 75, "2024-12-31")],
    }
    text = graph_text(base)
    for name, extra in variants.items():
        other = case(name.replace(" ", "-"), extra)
        assert ridge_rule(serial_rows(other), resolve_priors(other)) == rule
        assert graph_text(other) == text, name
