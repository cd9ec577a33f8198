"""Prior and prior predictive draws, all in one call of one compiled function.

`pm.sample_prior_predictive` calls its compiled function once per draw: 2,000 calls for the
February 11 model, each running its random variables' Python `perform` (0.6-1 s of every
estimate). Here every root random variable (one that no other random variable feeds) gets
the draws as its leading dimension (PyMC's `change_dist_size`) and the rest of the graph is
vectorised over it (`vectorize_graph`): the same joint distribution, drawn in one call
(benchmarks/README.md, "The prior draws in one call"). The result is what
`pm.sample_prior_predictive` returns: `prior`, `prior_predictive` (the observed variables)
and `observed_data`, one chain. A model PyTensor cannot vectorise (a serial case's shifted
prior) gets PyMC's draws, one a call, as before.

Potentials (the serial sightings) are ignored, as by PyMC's prior draws: the prior predictive
is of the measured evidence only (the report's prior columns say so).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import xarray as xr

log = logging.getLogger(__name__)


def prior_predictive(model, var_names: list[str], draws: int, seed: int) -> xr.DataTree:
    """`draws` joint prior draws of `var_names` (free, observed or deterministic), seeded."""
    import pymc as pm
    from pymc.distributions.shape_utils import change_dist_size
    from pytensor.compile.mode import get_mode
    from pytensor.graph.replace import vectorize_graph
    from pytensor.graph.traversal import ancestors

    from model import compiled

    rvs = model.basic_RVs
    roots = [rv for rv in rvs if not set(ancestors(rv.owner.inputs, blockers=rvs)) & set(rvs)]
    wanted = [model[n] for n in var_names]
    try:
        batched = {rv: change_dist_size(rv, (draws,), expand=True) for rv in roots}
        outputs = vectorize_graph(wanted, replace=batched)
    except (NotImplementedError, ValueError) as why:
        # a random variable PyTensor cannot vectorise (the serial ridge's shifted prior on
        # rate_before, a CustomDist built with its size left open; a size computed from a
        # batched shape): PyMC's draws, one a call
        log.info("prior draws one at a time (%s)", str(why).split(" with input")[0])
        return one_at_a_time(model, var_names, draws, seed)
    # Called once, so compiled for compiling fast: "FAST_COMPILE" (few rewrites, no fused C
    # kernels) compiles it in 8.5 s cold where the C backend took 51 s, and a warm process's
    # first call is no slower (1.0-1.3 s against 1.2-1.4); its graph from the disk cache
    # (model/compiled.py). Not "FAST_RUN", which in PyTensor 3 is numba: the evidence's draw
    # runs in numba's object mode, which numba cannot cache (benchmarks/README.md, "The side
    # compiles" and "The prior draws in one call").
    with compiled.through_cache():
        fn = pm.pytensorf.compile(
            [], outputs, random_seed=seed, mode=get_mode("FAST_COMPILE"), allow_input_downcast=True
        )
    values = fn()
    prior = {}
    for name, var, value in zip(var_names, wanted, values, strict=True):
        # a variable no random variable feeds is the same in every draw
        prior[name] = (
            value if value.ndim == var.ndim + 1 else np.broadcast_to(value, (draws,) + value.shape)
        )
    return pm.to_inference_data(prior=prior, model=model)


def one_at_a_time(model, var_names: list[str], draws: int, seed: int) -> xr.DataTree:
    """PyMC's prior draws, one call a draw, on the C backend through the compiled-function
    cache (model/compiled.py): for a model `prior_predictive` cannot vectorise."""
    import pymc as pm

    from model import compiled

    with model, warnings.catch_warnings(), compiled.through_cache():
        warnings.filterwarnings("ignore", message=".*Potential.*")  # the module docstring's
        return pm.sample_prior_predictive(
            draws=draws, var_names=var_names, random_seed=seed, backend="c"
        )
