"""Seconds per fit of PyMC's NUTS (the fallback sampler) through one Sampler, as an estimate's
refits run: the February 11 model, the slow test's settings (2 chains x 200 draws, 300
tuning), each fit with one row left out (row_weight), the first one compiling.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/pymc_refits.py [--fits 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from model import load_case
from model.build import build
from model.priors import resolve_priors
from model.sampler import Sampler, SamplerSettings
from tests.conftest import CASE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fits", type=int, default=4)
    args = parser.parse_args(argv)
    case = load_case(CASE)
    model, mix, obs = build(case, resolve_priors(case))
    sampler = Sampler(model, SamplerSettings(sampler="pymc", draws=200, tune=300, chains=2))
    seconds = []
    for i in range(args.fits):
        weight = np.ones(len(obs.ids))
        weight[i] = 0.0
        start = time.perf_counter()
        one = sampler.sample(mix.weights, 1 + i, row_weight=weight)
        seconds.append(time.perf_counter() - start)
        median = float(one["posterior"]["rate_before"].median())
        print(f"fit {i}: {seconds[-1]:.1f} s (rate_before median {median:.3f})", flush=True)
    later = seconds[1:]
    if later:
        print(f"first fit {seconds[0]:.1f} s; later fits {np.mean(later):.1f} s on average")


if __name__ == "__main__":
    main()
