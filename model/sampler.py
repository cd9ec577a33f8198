"""Sampler settings and the sampler: compile a model once (nutpie, or PyMC's NUTS as a
fallback) and sample it under any pm.Data values, retrying once a fit that fails the
diagnostics (model/diagnostics.py)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pymc as pm
import xarray as xr

from model.diagnostics import RETRY_MIN_DRAWS, sample_with_retry
from model.timing import Stopwatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 20241125  # any fixed number; the same seed and inputs give the same numbers
    # "nutpie" (Rust NUTS on numba, the default and fastest here, see benchmarks/), "pymc"
    # (PyMC's NUTS on numba, the fallback if nutpie is missing) or "pymc-c" (PyMC's NUTS on
    # the C backend, PyMC 5's default, kept as the benchmark's baseline).
    sampler: str = "nutpie"
    target_accept: float = 0.9
    # nutpie's mass-matrix adaptation. "draw_diag" (variances of the draws, as PyMC adapts)
    # beat nutpie's own "diag" (draws and gradients) in effective draws per second on the
    # Feb 11 case and on 50-plant programmes, with fewer divergences (benchmarks/README.md).
    # PyMC's samplers ignore it.
    adaptation: str = "draw_diag"
    prior_draws: int = 2000
    cores: int = 2


class Sampler:
    """Compiles a model once and samples it under several reading weights."""

    def __init__(self, model: pm.Model, settings: SamplerSettings, watch: Stopwatch | None = None):
        self.model, self.settings = model, settings
        self.watch = watch or Stopwatch()
        self.watch.mark("other")
        # Every fit starts from the model's own data, whatever an earlier fit changed.
        self.defaults = {v.name: v.get_value() for v in model.data_vars}
        self.name = settings.sampler
        self.compiled = None
        self.retries: list[dict] = []  # fits sampled again (diagnostics.sample_with_retry)
        # Off unless the caller's fits are a report's (fit, fit_programme): calibration's many
        # fits are judged as a set, and retrying the failing ones would change what it measures.
        self.retry = False
        if self.name == "nutpie":
            try:
                import nutpie  # noqa: F401 - is it installed? (compile_nutpie uses it)
            except ImportError:  # pragma: no cover - depends on the environment
                log.warning("nutpie is not installed: falling back to PyMC's NUTS")
                self.name = "pymc"
            else:
                from model.callbacks import compile_nutpie

                self.watch.begin("compiling the model for nutpie")
                # nutpie's compile, with its numba callbacks cached on disk (model/callbacks.py)
                self.compiled = compile_nutpie(model)
        self.watch.mark("compile")

    def sample(
        self,
        weights: np.ndarray | None,
        seed: int,
        stage: str = "sampling",
        label: str | None = None,
        **data: np.ndarray,
    ) -> xr.DataTree:
        """Sample with these reading weights and any other pm.Data values (by name); a fit
        that fails the diagnostics is sampled once more, more carefully (`self.retries`, where
        `label`, else the stage, names it)."""
        self.watch.mark("other")
        s = self.settings
        try:
            if not self.retry or s.chains * s.draws < RETRY_MIN_DRAWS:
                return self._sample(weights, seed, data)
            one, retry = sample_with_retry(
                lambda **over: self._sample(weights, seed, dict(data), **over),
                f"{label or stage}, seed {seed}",
                s.target_accept,
                s.tune,
            )
            if retry is not None:
                self.retries.append(retry)
            return one
        finally:
            # PyMC's NUTS compiles inside pm.sample, so for it this includes compiling.
            self.watch.mark(stage)

    def _sample(self, weights: np.ndarray | None, seed: int, data: dict, **over) -> xr.DataTree:
        s = dataclasses.replace(self.settings, **over)  # over: a retry's settings
        if weights is not None:  # None: a programme (each plant has its own weights)
            data["reading_weight"] = weights
        data = {**self.defaults, **data}
        if self.compiled is not None:
            import nutpie

            return nutpie.sample(
                self.compiled.with_data(**data),
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.cores,
                seed=seed,
                progress_bar=False,
                save_warmup=False,
                target_accept=s.target_accept,
                adaptation=s.adaptation,
            )
        with self.model:
            pm.set_data(data)
            return pm.sample(
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.cores,
                random_seed=seed,
                nuts_sampler="pymc",
                backend="c" if self.name == "pymc-c" else "numba",
                target_accept=s.target_accept,
                progressbar=False,
            )
