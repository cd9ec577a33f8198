"""Shared fixtures. Fits here use few draws: they test the plumbing, not the estimate
(the estimate at default settings is checked by the CLI test and by `make report`)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "data" / "cases" / "february-11-plant"
HEADER = (
    "id,kind,period_start,period_end,value,lower,upper,bound,unit,reading,source,url,"
    "date_reported,reliability,quote,note"
)


def row(**cells) -> str:
    """One ledger line with sensible defaults, for tests that build small ledgers."""
    base = {
        "id": "launches-x",
        "kind": "launches",
        "period_start": "2024-01-01",
        "period_end": "2024-01-31",
        "value": "10",
        "lower": "",
        "upper": "",
        "bound": "exact",
        "unit": "missiles",
        "reading": "",
        "source": "Outlet",
        "url": "https://example.org/a",
        "date_reported": "2024-02-01",
        "reliability": "B",
        "quote": "ten were fired",
        "note": "",
    }
    base.update(cells)
    return ",".join(f'"{v}"' if "," in v else v for v in base.values())


def graph_text(case) -> str:
    """The model's log density and deterministics as model/compiled.py keys them, with the
    value variables and the shared variables (pm.Data, dims' lengths) as inputs."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors

    from model import compiled
    from model.build import build_model
    from model.priors import resolve_priors

    model = build_model(case, resolve_priors(case))
    outputs = model.replace_rvs_by_values([model.logp(), *model.deterministics])
    shared = [v for v in ancestors(outputs) if isinstance(v, SharedVariable)]
    shared.sort(key=lambda v: v.name or "")
    text = compiled._graph_text([*model.value_vars, *shared], outputs)
    assert text is not None
    return text


@pytest.hookimpl(trylast=True)  # after `-m` has deselected: only the tests that will run count
def pytest_collection_modifyitems(items):
    """Longest files first. `make test-slow` gives each of its two workers a test file at a
    time (--dist loadfile), in collection order; a long file handed out last sets the end of
    the run while the other worker idles. So the files are ordered by the sum of their tests'
    `slow(minutes=...)` (measured in CI; a stale figure only costs balance, never a result),
    longest first; the sort is stable, so a file's tests keep their order and the default
    tier (no minutes) is unchanged."""
    minutes: dict[Path, float] = defaultdict(float)
    for item in items:
        mark = item.get_closest_marker("slow")
        minutes[item.path] += mark.kwargs.get("minutes", 0) if mark else 0
    items.sort(key=lambda item: -minutes[item.path])


@pytest.fixture
def case_copy(tmp_path) -> Path:
    """A writable copy of the February 11 case folder."""
    dest = tmp_path / "case"
    shutil.copytree(CASE, dest)
    return dest


@pytest.fixture(scope="session")
def small_fit(tmp_path_factory, worker_id):
    """One fit of the real case with few draws, shared by the check and report tests. Under
    pytest-xdist the first worker fits and saves it; the others load the file (the pattern
    pytest-xdist documents for session fixtures), so the model compiles once per run."""
    import xarray as xr
    from filelock import FileLock

    from model import load_case
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    def run(path):
        case = load_case(CASE)
        settings = SamplerSettings(draws=200, tune=300, chains=2, prior_draws=400)
        fit(case, resolve_priors(case), settings).to_netcdf(path, engine="netcdf4")

    if worker_id == "master":  # no xdist: this session's own folder
        shared = tmp_path_factory.getbasetemp() / "small_fit.nc"
        run(shared)
    else:  # the run's folder, shared by its workers
        shared = tmp_path_factory.getbasetemp().parent / "small_fit.nc"
        with FileLock(str(shared) + ".lock"):
            if not shared.exists():
                run(shared)
    return xr.load_datatree(shared, engine="netcdf4")
