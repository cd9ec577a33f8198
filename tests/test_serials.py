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
from model.serials import serial_logp, serial_rows
from tests.conftest import HEADER

K, N_TRUE, SEED = 10, 400, 11


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
    """Population size under the serial likelihood with a flat prior on N >= m - 1/2 (the
    midpoint-rule support of n >= m), sampled with nutpie as the case model is."""
    import nutpie

    m = serials.max()
    with pm.Model() as model:
        excess = pm.HalfFlat("excess")
        size = pm.Deterministic("size", m - 0.5 + excess)
        pm.Potential("serials", serial_logp(size, np.arange(K), serials).sum())
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


def test_beyond_the_wall_the_density_falls_and_inside_it_is_untouched():
    import pytensor.tensor as pt

    produced = pt.as_tensor(np.array([99.0, 100.0, 120.0]))
    values = serial_logp(produced, np.zeros(3), np.full(3, 100.0)).eval()
    assert values[2] == pytest.approx(-np.log(120.0))  # inside: 1 / available, no wall term
    assert values[1] == pytest.approx(-np.log(100.0))  # n = 100 >= 100 - 1/2: inside
    assert values[0] == pytest.approx(-np.log(99.0) - 0.5)  # one wall width beyond: -1/2


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


def _serial_row(id_, serial, date, block=""):
    # the columns of the February 11 ledger, plus `block` (added by _case_with_serials)
    header = HEADER.split(",") + ["supersedes", "used", "same_as", "bias_group", "block"]
    cells = dict.fromkeys(header, "")
    cells |= {
        "id": id_, "kind": "serial", "period_end": date, "value": str(serial), "bound": "exact",
        "unit": "serial", "source": "Synthetic test", "url": "https://example.org/s",
        "date_reported": date, "reliability": "B", "quote": "serial seen", "block": block,
    }  # fmt: skip
    return ",".join(cells[c] for c in header)


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
    # production counted from the block's start to the sighting: Jan-Feb 2024 + 1 day of Mar
    assert s.produced_weights[0].sum() == pytest.approx(2 + 1 / 31)


def test_bad_serial_rows_name_file_row_and_column(case_copy):
    _case_with_serials(case_copy, [_serial_row("serial-x", 12.5, "2024-03-01", "nope")])
    with pytest.raises(InputError) as info:
        serial_rows(load_case(case_copy))
    text = str(info.value)
    assert "evidence.csv" in text and "serial-x" in text and "block" in text


@pytest.mark.slow
def test_a_plant_with_serials_recovers_its_production(tmp_path):
    """Synthetic plant (invented numbers): 12 a month, 1.5x after an expansion completed in
    month 12 with a 20-month ramp. 20 serials are seen over two years, each drawn uniformly
    from the items made by its date and not seen before. The fit must cover the true rate
    and the true production, and the serials must narrow rate_before well inside its prior."""
    from model.fit import SamplerSettings, fit
    from model.priors import resolve_priors
    from model.production import production_rate
    from model.report import write_report
    from model.summary import summarize

    truth = {"rate_before": 12.0, "multiplier": 1.5, "completion": 12.0, "ramp": 20.0}
    months = np.arange(24) + 0.5
    made = production_rate(months, truth["rate_before"], truth["multiplier"],
                           truth["completion"], truth["ramp"]).eval()  # fmt: skip
    rng = np.random.default_rng(5)
    case = tmp_path / "serial-plant"
    case.mkdir()
    (case / "case.toml").write_text(
        '# SYNTHETIC test case: invented numbers.\nid = "serial-plant"\n'
        'title = "Synthetic plant with serials"\nunit = "units"\nevidence = "evidence.csv"\n'
        '[window]\nstart = "2023-01"\nend = "2024-12"\n[exports]\nstart = "2023-02"\n'
        '[area_ratio]\nrationale = "Synthetic."\n[area_ratio.weights]\nonly = 1.0\n'
        '[priors.completion]\ndist = "Uniform"\nlower = "2023-10"\nupper = "2024-02"\n'
        'source = "case"\nrationale = "Synthetic."\n[serials.main]\nfirst = 1\n'
    )
    header = HEADER.split(",") + ["supersedes", "used", "block"]  # as _serial_row writes
    area = dict.fromkeys(header, "") | {
        "id": "area", "kind": "area_ratio", "period_end": "2023-06-01", "lower": "1.45",
        "upper": "1.55", "bound": "between", "unit": "ratio", "reading": "only",
        "source": "Synthetic", "url": "https://example.org/s", "date_reported": "2023-07-01",
        "reliability": "B", "quote": "synthetic",
    }  # fmt: skip
    lines = [",".join(header), ",".join(area[c] for c in header)]
    seen: set[int] = set()
    for j, month in enumerate(np.sort(rng.integers(3, 24, size=20))):
        made_by = int(np.floor(made[: month + 1].sum()))
        serial = int(rng.choice(sorted(set(range(1, made_by + 1)) - seen)))
        seen.add(serial)
        date = f"{2023 + month // 12}-{month % 12 + 1:02d}-28"
        lines.append(_serial_row(f"serial-{j:02d}", serial, date, "main"))
    # The last item reported again by a second outlet: the same item, adding nothing.
    lines.append(_serial_row("serial-again", serial, date, "main"))
    (case / "evidence.csv").write_text("\n".join(lines) + "\n")

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
