"""The previous run's refits as this run's proposals: a rerun samples a refit only when the
draws of the last one cannot be reweighted to its target.

A refit samples one target (the case with a row or a source left out, a reading alone, a
scenario of the main fit's prior families) under this run's ledger. The same target under the
previous run's ledger differs by the rows added, changed or dropped since, so that refit's
draws, saved with the log density they were sampled from (group `refit_draws`, in the
unconstrained space), are an importance sample of this run's target: log weight = this run's
log density of the target minus the saved one. They are Pareto-smoothed and held to every rule
a reweighted result meets (reweight.check: k, bulk and tail ESS, and the refit's own R-hat and
divergences); an unchanged ledger gives equal weights, so the refit's own draws. When the rules
fail the target is refitted, as before. A result obtained this way carries its `method`
(REUSED), k, efficiency and the run it came from; its saved draws are carried forward, so every
later run weighs the draws a sampler made, never weights of weights.

What to measure next's refits (model/voi_refit.py) are read too, from their own nodes
(`VOI_GROUP`): one stands in for this run's refit of the same simulated value as it is when its
target is the same (voi_refit.same_target), and is reweighted to a target next to it after a
ledger change (voi_refit.reweighted_previous: a changed ledger changes the main fit, so the
simulated values, but each is drawn at the same quantile as before, so it moves little).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from model.reweight import SAMPLE

log = logging.getLogger(__name__)

GROUP = "refit_draws"  # the DataTree group of the refits' draws, by the refit's own path
REUSED = "reused"  # a result's `method`: the previous run's refit, reweighted to this ledger
PARAMETER = "unconstrained_parameter"  # as the main fit's sample_stats name it
VOI_GROUP = "voi_refits"  # model/voi_refit.py's nodes, candidate_<i>


@dataclass(frozen=True)
class Previous:
    """The saved refits' draws of one earlier run (`run`: its report folder's name), by the
    path of the refit's result in the DataTree (e.g. "source_refits/bias-group-x")."""

    run: str
    proposals: dict[str, xr.Dataset]
    # what to measure next's refits (model/voi_refit.py), by candidate name: reused when this
    # run refits the same simulated value of the same target (`VOI_GROUP` nodes saved with
    # their draws' `upars` and `log_density`)
    voi: dict[str, xr.Dataset] = field(default_factory=dict)


def layout(value_vars: list, shapes: list[tuple]) -> str:
    """What an unconstrained draw's coordinates are (each value variable's name, with its
    transform, and shape): draws of another layout are of another model and never reused."""
    return json.dumps([[v.name, list(s)] for v, s in zip(value_vars, shapes, strict=True)])


def proposal(
    upars: np.ndarray, log_density: np.ndarray, diverging: xr.DataArray, where: str
) -> xr.Dataset:
    """One refit's draws as the next run reads them: `upars` (chain x draw, parameters) chain
    after chain, the log density of its target at each (with the transforms' Jacobians), its
    divergences; `where` is `layout`."""
    chains, draws = diverging.sizes["chain"], diverging.sizes["draw"]
    ds = xr.Dataset(
        {
            "upars": (("chain", "draw", PARAMETER), upars.reshape(chains, draws, -1)),
            "log_density": (SAMPLE, log_density.reshape(chains, draws)),
            "diverging": diverging.transpose(*SAMPLE).drop_vars(SAMPLE, errors="ignore"),
        }
    )
    ds.attrs["layout"] = where
    return ds


def reweighing(
    saved: xr.Dataset, density, data: dict | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One saved refit's draws (`proposal`'s `upars`, flat, chain after chain), this run's
    log density of a target (`data`: its pm.Data; `density`: model/moment_match.py's) at
    them, and its log ratio to the density they were sampled from (the saved one)."""
    upars = saved["upars"].transpose(*SAMPLE, PARAMETER).to_numpy()
    upars = upars.reshape(-1, upars.shape[-1])
    log_density = density.logp(upars, data)
    sampled = saved["log_density"].transpose(*SAMPLE).to_numpy().ravel()
    return upars, log_density, log_density - sampled


def load(reports_dir: str | Path, case_id: str) -> Previous | None:
    """The saved refits of the run `latest` points at, if it saved any. A file that cannot be
    read is said in the log, and every refit is sampled (nothing is reused from it)."""
    import netCDF4

    from model.publish import NETCDF_ENGINE

    path = Path(reports_dir) / case_id / "latest" / "posterior.nc"
    if not path.exists():
        return None
    run = path.parent.resolve().name
    try:
        # only that group: opening the whole tree read every group's metadata (1.8 s of a
        # warm rerun of February 11; the group alone, 0.05 s)
        with netCDF4.Dataset(path, "r") as f:
            groups = [g for g in (GROUP, VOI_GROUP) if g in f.groups]
        if not groups:
            return None
        proposals, voi = {}, {}
        if GROUP in groups:
            with xr.open_datatree(path, engine=NETCDF_ENGINE, group=GROUP) as tree:
                proposals = {
                    f"{group.name}/{name}": node.to_dataset().load()
                    for group in tree.children.values()
                    for name, node in group.children.items()
                }
        if VOI_GROUP in groups:
            with xr.open_datatree(path, engine=NETCDF_ENGINE, group=VOI_GROUP) as tree:
                nodes = [node.to_dataset() for node in tree.children.values()]
                voi = {n.attrs["candidate"]: n.load() for n in nodes if "upars" in n}
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # netCDF4, xarray
        log.warning("the previous run's refits (%s) cannot be read (%s): refitting", path, error)
        return None
    return Previous(run, proposals, voi)
