"""run_estimate (model/pipeline.py), as a notebook calls it: the diff and the history are part
of the pipeline, not of the CLI, so a second run's report says what changed."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

import model.fit
from model.pipeline import run_estimate
from model.reuse import GROUP, VOI_GROUP
from model.summary import window_of
from model.voi import all_candidates

from .conftest import CASE


def test_a_notebook_run_twice_says_what_changed(tmp_path, monkeypatch, small_fit):
    """The fit is the session's small fit of the real case (its sampling is tested
    elsewhere): what is tested is everything run_estimate does around it."""
    fits, previous_runs = [], []
    # a refit's draws, as fit.py saves them for the next run (model/reuse.py)
    tree = small_fit.copy()
    tree[f"{GROUP}/source_refits/some-source"] = xr.Dataset(
        {"log_density": (("chain", "draw"), np.zeros((2, 3)))}, attrs={"layout": "[]"}
    )
    # what to measure next's refits: one saved with its draws (the density was compiled),
    # one without; `simulations` 0, so the summary's table does not read these stand-ins
    names = [c.name for c in all_candidates(small_fit, window_of(small_fit))]
    upars = np.zeros((1, 2, 3, 1))
    dims = ("simulation", "chain", "draw", "unconstrained_parameter")
    for i, variables in enumerate(({"upars": (dims, upars)}, {})):
        attrs = {"candidate": names[i], "simulations": 0}
        tree[f"{VOI_GROUP}/candidate_{i}"] = xr.Dataset(variables, attrs=attrs)

    def saved_fit(case, priors, settings, conditional=True, scheduler=None, previous=None):
        fits.append(case.id)
        previous_runs.append(previous)
        return tree

    monkeypatch.setattr(model.fit, "fit", saved_fit)
    first = run_estimate(CASE, reports_dir=tmp_path)
    second = run_estimate(CASE, reports_dir=tmp_path)
    assert fits == ["february-11-plant", "february-11-plant"]
    assert first.folder != second.folder and first.folder.parent == second.folder.parent
    # the second run is handed the first's saved refits; `fresh` hands over none
    assert previous_runs[0] is None and previous_runs[1].run == first.folder.name
    # every saved refit of the first run: the fit's own (its density is compiled to expand
    # nutpie's draws, so its refits are saved) and the one added here
    saved = [
        f"{kind}/{name}" for kind, node in tree[GROUP].children.items() for name in node.children
    ]
    assert "source_refits/some-source" in saved
    assert sorted(previous_runs[1].proposals) == sorted(saved)
    assert previous_runs[1].proposals["source_refits/some-source"].attrs["layout"] == "[]"
    assert list(previous_runs[1].voi) == [names[0]]  # by candidate, only those with draws
    assert previous_runs[1].voi[names[0]]["upars"].shape == upars.shape
    run_estimate(CASE, reports_dir=tmp_path, fresh=True)
    assert previous_runs[2] is None

    first_md = (first.folder / "report.md").read_text(encoding="utf-8")
    assert "This is the first run of this case." in first_md
    page = (second.folder / "report.md").read_text(encoding="utf-8")
    changed = page.split("## What changed", 1)[1].split("\n## ", 1)[0]
    assert "first run of this case" not in changed
    assert f"Compared with the previous run {first.folder.name}" in changed
    assert "The inputs are unchanged" in changed

    saved = json.loads((second.folder / "summary.json").read_text(encoding="utf-8"))
    assert saved["diff"]["previous_run"] == first.folder.name
    assert [r["run"] for r in saved["history"]] == [first.folder.name, "this run"]
    assert second.exit_code == (0 if saved["passed"] else 1)
