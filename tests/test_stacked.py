"""The stacked programme model (model/stacked.py) against the nested one (model/programme.py):
the same joint density, and the same variables once unstacked. SYNTHETIC plants with invented
numbers, of different windows, priors and row kinds, so that every index in the stacking is
exercised: a plant's months, years and rows in the programme's."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from pytensor.compile.mode import Mode

from model.programme import build_programme_model, load_programme, resolve_programme_priors
from model.stacked import STACK, unstack, why_not_stacked
from tests.conftest import HEADER
from tests.programme_checks import assert_plant_checks

COLUMNS = [*HEADER.split(","), "used"]
USE_KINDS = {"launches", "use_lag", "date_code"}  # the rows that measure use (build.measures_use)
COMMON = {"source": "Synthetic", "url": "https://example.org/s", "reliability": "B",
          "quote": "synthetic", "bound": "exact", "unit": "units"}  # fmt: skip
# (id, window, rate-before prior median or None for the default): invented
PLANTS = [("north", "2021-03", "2024-12", None), ("south", "2022-07", "2025-06", 20.0),
          ("east", "2020-01", "2023-09", 5.0)]  # fmt: skip


def _line(**cells) -> str:
    row = dict.fromkeys(COLUMNS, "") | COMMON | cells
    return ",".join(str(row[c]) for c in COLUMNS)


def write_programme(folder, readings: int, unmeasured: str | None = None):
    """Three plants; `unmeasured` names one whose ledger has no row that measures use (no
    launches, use lags or date codes), so that it has no latent monthly use."""
    folder.mkdir(parents=True)
    names = [p[0] for p in PLANTS]
    (folder / "case.toml").write_text(
        '# SYNTHETIC test programme: invented numbers.\nid = "stackable"\ntitle = "Synthetic"\n'
        f'unit = "units"\nplants = {names!r}\n'.replace("'", '"')
    )
    for i, (plant, start, end, rate) in enumerate(PLANTS):
        (folder / plant).mkdir()
        year = int(start[:4])
        weights = {"narrow": 0.7, "wide": 0.3} if readings == 2 else {"narrow": 1.0}
        toml = (
            f'# SYNTHETIC.\nid = "{plant}"\ntitle = "Synthetic {plant}"\nunit = "units"\n'
            f'evidence = "evidence.csv"\n[window]\nstart = "{start}"\nend = "{end}"\n'
            f'[exports]\nstart = "{start}"\n[area_ratio]\nrationale = "Synthetic."\n'
            "[area_ratio.weights]\n"
            + "".join(f"{k} = {v}\n" for k, v in weights.items())
            + f'[priors.completion]\ndist = "Uniform"\nlower = "{year + 1}-01"\n'
            f'upper = "{year + 1}-12"\nsource = "case"\nrationale = "Synthetic."\n'
        )
        if rate is not None:  # a plant's own prior: its parameters differ from the others'
            toml += (
                f'[priors.rate_before]\ndist = "LogNormal"\nmedian = {rate}\nsigma = 0.8\n'
                'source = "case"\nrationale = "Synthetic."\n'
            )
        (folder / plant / "case.toml").write_text(toml)
        lines = [",".join(COLUMNS)]
        for j, (name, low, high) in enumerate([("narrow", 1.5, 1.6), ("wide", 1.2, 2.0)]):
            if name in weights:
                lines.append(_line(id=f"area-{j}", kind="area_ratio", reading=name,
                                   period_end=f"{year + 1}-06-01", lower=round(low + 0.02 * i, 6),
                                   upper=round(high + 0.1 * i, 6), bound="between", unit="ratio",
                                   date_reported=f"{year + 1}-07-01"))  # fmt: skip
        lines += [
            _line(id="launches-month", kind="launches", period_start=f"{year + 1}-03-01",
                  period_end=f"{year + 1}-03-31", value=4 + i, date_reported=f"{year + 1}-04-01"),
            _line(id="launches-year", kind="launches", period_start=f"{year + 2}-01-01",
                  period_end=f"{year + 2}-12-31", bound="at_least",
                  lower=60, date_reported=f"{year + 3}-01-05", reliability="C"),
            _line(id="transfers", kind="transfers", period_end=f"{year + 2}-06-30",
                  value=40 + 5 * i, date_reported=f"{year + 2}-08-01"),
            _line(id="made", kind="production", period_start=f"{year + 1}-01-01",
                  period_end=f"{year + 1}-12-31", bound="between", lower=80, upper=150,
                  date_reported=f"{year + 2}-02-01", reliability="D"),
            _line(id="capacity", kind="capacity", period_end=f"{year + 2}-09-30",
                  bound="at_most", upper=200, date_reported=f"{year + 2}-10-01"),
            _line(id="lag", kind="use_lag", period_end=f"{year + 2}-01-01", value=3,
                  unit="months", date_reported=f"{year + 2}-01-02"),
            _line(id="datecode", kind="date_code", period_start=f"{year + 1}-01-01",
                  period_end=f"{year + 1}-06-30", used=f"{year + 2}-02-01", unit="months",
                  bound="", date_reported=f"{year + 2}-03-01"),
        ]  # fmt: skip
        if plant == unmeasured:
            lines = [r for r in lines if r.split(",")[1] not in USE_KINDS]
        (folder / plant / "evidence.csv").write_text("\n".join(lines) + "\n")
    return folder


# Python linker, PyTensor's usual rewrites but no fusion: one evaluation needs no C compile
# (which took a minute a test), and both models are evaluated the same way.
EVAL = Mode(linker="py", optimizer="fast_run").excluding("fusion", "add_mul_fusion")


def _values(model: pm.Model, point: dict) -> xr.Dataset:
    """Every free variable and deterministic of `model` at `point`, as one draw."""
    names = [v.name for v in model.free_RVs + model.deterministics]
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    fn = pytensor.function(model.value_vars, outputs, mode=EVAL)
    values = fn(**{v.name: point[v.name] for v in model.value_vars})
    data = {}
    for name, value in zip(names, values, strict=True):
        dims = model.named_vars_to_dims.get(name, ())
        coords = {d: list(model.coords[d]) for d in dims}
        data[name] = xr.DataArray(value, dims=dims, coords=coords).expand_dims(["chain", "draw"])
    return xr.Dataset(data)


def _logp(model: pm.Model, point: dict) -> float:
    terms = [pt.sum(term) for term in model.logp(sum=False)]  # one Add of them all has too
    fn = pytensor.function(model.value_vars, terms, mode=EVAL)  # many operands for Python
    return math.fsum(fn(**{v.name: point[v.name] for v in model.value_vars}))


@pytest.mark.parametrize(
    ("readings", "unmeasured"),
    [(1, None), (2, None), (2, "south")],
    ids=["one reading (non-centred)", "two (mixture)", "two, south's use unmeasured"],
)
def test_the_stacked_model_is_the_nested_model(tmp_path, readings, unmeasured):
    """At a random point, the two builders give the same log-density and, once unstacked,
    the same variables with the same dims, coords and values (to rounding: the stacked model
    sums the same terms in another order). A plant whose rows do not measure use has no
    latent monthly use in either."""
    programme = load_programme(write_programme(tmp_path / "programme", readings, unmeasured))
    priors, hyper = resolve_programme_priors(programme)
    assert why_not_stacked(programme, priors) == []
    nested, _ = build_programme_model(programme, priors, hyper, stacked=False)
    stacked, layout = build_programme_model(programme, priors, hyper, stacked=True)

    rng = np.random.default_rng(7)
    point = {
        name: value + rng.normal(0, 0.3, size=np.shape(value))
        for name, value in nested.initial_point().items()
    }
    plants = [p.id for p in programme.plants]
    stacked_point = {}
    for v in stacked.value_vars:
        if v.name.startswith(f"{STACK}::"):
            base = v.name.removeprefix(f"{STACK}::")
            values = [point[f"{p}::{base}"] for p in plants if f"{p}::{base}" in point]
            # the latent monthly use lies on each plant's own months, one plant after another
            join = np.concatenate if base == "use_z" else np.stack
            stacked_point[v.name] = join(values)
        else:
            stacked_point[v.name] = point[v.name]
    covered = {n for n in stacked_point if not n.startswith(f"{STACK}::")} | {
        f"{p}::{n.removeprefix(f'{STACK}::')}" for n in stacked_point for p in plants
        if n.startswith(f"{STACK}::")
    }  # fmt: skip
    unmeasured_z = {f"{p}::use_z" for p in plants if p == unmeasured}
    assert not unmeasured_z & set(point)  # no latent use where no row measures it
    assert covered - unmeasured_z == set(point)  # each nested free variable has its stacked one
    z_size = sum(np.size(point[f"{p}::use_z"]) for p in plants if p != unmeasured)
    assert np.size(stacked_point[f"{STACK}::use_z"]) == z_size

    assert _logp(stacked, stacked_point) == pytest.approx(_logp(nested, point), rel=1e-12)
    expected = _values(nested, point)
    got = unstack(_values(stacked, stacked_point), layout)
    assert sorted(got.data_vars) == sorted(expected.data_vars)
    for name in expected.data_vars:
        assert got[name].dims == expected[name].dims, name
        xr.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-12)


def test_plants_with_other_indicators_are_nested_and_say_why(tmp_path):
    from tests.test_programme import write_programme as write_mixed

    programme = load_programme(write_mixed(tmp_path / "mixed"))
    priors, hyper = resolve_programme_priors(programme)
    reasons = why_not_stacked(programme, priors)
    assert reasons == [
        "serial-plant has serial rows",
        "staffing-plant has workforce_ratio rows",
        "casting-plant has stage_ratio rows",
        "casting-plant declares stages",
    ]
    model, layout = build_programme_model(programme, priors, hyper)
    assert layout is None and "serial-plant::rate_before" in model.named_vars
    with pytest.raises(ValueError, match="cannot be stacked: serial-plant has serial rows"):
        build_programme_model(programme, priors, hyper, stacked=True)


@pytest.mark.slow(minutes=0.7)
def test_a_stacked_programme_runs_end_to_end_with_the_nested_layout(tmp_path, monkeypatch):
    """`capest estimate` on a stackable programme (few draws: this tests the plumbing, the
    equivalence test above the model): the report is written, says the plants were stacked,
    and the saved fit has each plant's variables under its own name and dims, as a nested
    fit's, in the posterior, prior, observed data and log-likelihood. What a cold machine
    compiles beside nutpie's compile (model/warmup.py) is what the fit then loads."""
    import json

    from model import compiled, programme, warmup
    from model.cli import main

    keys, works = [], []  # the compiled-function cache's keys asked for; Beside's work
    key = compiled._key
    monkeypatch.setattr(compiled, "_key", lambda *a, **k: keys.append(key(*a, **k)) or keys[-1])
    beside = warmup.Beside.__init__
    monkeypatch.setattr(
        warmup.Beside, "__init__", lambda self, work: works.append(work) or beside(self, work)
    )
    folder = write_programme(tmp_path / "programme", readings=2)
    few = ["--draws", "200", "--tune", "300", "--chains", "2"]
    code = main(["estimate", str(folder), "--reports-dir", str(tmp_path / "reports"), *few])
    assert code in (0, 1)  # 1: a check failed at so few draws; the plumbing is what is tested
    # the child's work, run here (a warm cache forks no child): graphs the fit itself asked for
    (work,) = [w for w in works if w.func is programme._side_compiles]
    fitted = set(keys)
    keys.clear()
    work()
    assert len(keys) >= 3 and None not in keys and set(keys) <= fitted
    run = tmp_path / "reports" / "stackable" / "latest"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["programme_model"] == "stacked"
    assert "plants stacked on one `plant` dimension" in (run / "report.md").read_text()
    tree = xr.open_datatree(run / "posterior.nc", engine="netcdf4")
    for plant, start, end, _ in PLANTS:
        production = tree["posterior"][f"{plant}::production"]
        assert production.dims == ("chain", "draw", f"{plant}::month")
        months = [str(m) for m in production[f"{plant}::month"].values]
        assert (months[0], months[-1]) == (start, end)
        for group, name in [("prior", "rate_after"), ("observed_data", "evidence"),
                            ("log_likelihood", "log_likelihood__evidence"),
                            ("posterior", "elasticity")]:  # fmt: skip
            assert f"{plant}::{name}" in tree[group], (group, plant, name)
        assert list(tree["observed_data"][f"{plant}::evidence"][f"{plant}::obs"].values) == [
            "launches-month", "launches-year", "transfers", "made", "capacity", "lag", "datecode"
        ]  # fmt: skip
    assert not any(str(v).startswith(f"{STACK}::") for v in tree["posterior"].data_vars)
    # each plant gets a plant's predictive and sensitivity checks, which can fail
    assert_plant_checks(run, tree, [p[0] for p in PLANTS], bad_plant="north")
