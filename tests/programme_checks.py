"""The plant checks of a programme fit (summary.plant_checks): shared by the slow programme
tests, which already pay for a fit; nothing here fits a model."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from model.checks import PLANT_IN_PROGRAMME


def misfit(tree: xr.DataTree, plant: str, kind: str, factor: float) -> xr.DataTree:
    """A copy of a programme fit whose `plant` states `factor` times its counts of `kind`
    (values and bounds), against a posterior fitted to the real counts."""
    tree = tree.copy()
    const, obs = tree["constant_data"].to_dataset(), tree["observed_data"].to_dataset()
    moved = const[f"{plant}::kind"] == kind
    assert bool(moved.any()), (plant, kind)
    shift = np.log(factor)  # log1p(x * f) ~ log1p(x) + log f for counts well above 1
    name = f"{plant}::evidence"
    tree["observed_data"] = obs.assign({name: obs[name].where(~moved, obs[name] + shift)})
    low, high = f"{plant}::lower", f"{plant}::upper"
    tree["constant_data"] = const.assign(
        {
            low: const[low].where(~moved, const[low] + shift),
            high: const[high].where(~moved, const[high] + shift),
        }  # fmt: skip
    )
    return tree


def assert_plant_checks(run, tree: xr.DataTree, plants: list[str], bad_plant: str) -> None:
    """Every plant has the single-plant predictive and sensitivity checks in the summary and
    the report, none fails on the clean programme, and one plant's launch counts off by x3
    fail that plant's checks and the programme, and no other plant's."""
    from model.summary import summarize_programme

    summary = json.loads((run / "summary.json").read_text())
    page = (run / "report.md").read_text()
    by_name = {c["name"]: c for c in summary["checks"]}
    for plant in plants:
        for check in PLANT_IN_PROGRAMME:
            assert f"{plant}: {check}" in by_name and f"{plant}: {check}" in page
        entry = next(p for p in summary["plants"] if p["plant"] == plant)
        assert [c["name"] for c in entry["checks"]] == PLANT_IN_PROGRAMME
    clean = [n for n, c in by_name.items() if c.get("plant") and c["status"] == "fail"]
    assert clean == [], [by_name[n]["finding"] for n in clean]

    bad = summarize_programme(misfit(tree, bad_plant, "launches", 3))
    failed = [c for c in bad["checks"] if c.get("plant") and c["status"] == "fail"]
    assert failed and not bad["passed"]
    assert {c["plant"] for c in failed} == {bad_plant}, [c["name"] for c in failed]
    # the launches then exceed the plant's stated transfers, and sit above what its other rows
    # predict (LOO-PIT ECDF; at these few draws it may stay just inside its band)
    assert {c["check"] for c in failed} <= {"launches within transfers", "LOO-PIT ECDF"}
