"""capest: Bayesian production-capacity estimates from open-source evidence.

The pipeline is a chain of plain functions, each callable from a notebook:

    load_case(path) -> Case                      (case.toml + evidence ledger, validated)
    resolve_priors(case) -> Priors               (defaults from data/priors.toml and the
                                                  reference class, with the case's overrides)
    build_model(case, priors) -> pymc.Model
    fit(case, priors, settings) -> DataTree      (posterior, diagnostics, provenance)
    summarize(idata) -> dict                     (the summary.json contract)
    write_report(idata, summary, reports_dir) -> Path  (reports/<case>/<UTC timestamp>/)
"""

import os
import sys


def default_pytensor_flag(name: str, value: bool | int) -> None:
    """PyTensor's flag `name` set to `value` unless the caller set it in PYTENSOR_FLAGS: in
    the environment before pytensor loads (and so for child processes), and where it has
    loaded already (a notebook or script that imported pymc first: its config read the flags
    then) in its config too."""
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if name in flags:
        return
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"{name}={value}") if f)
    if "pytensor" in sys.modules:
        setattr(sys.modules["pytensor"].config, name, value)


# Exact reruns: PyTensor's numba backend defaults to fastmath, which makes a freshly
# compiled run and a cached one differ in the last bits (the same inputs and seed gave other
# draws in a notebook than `capest estimate`).
default_pytensor_flag("numba__fastmath", False)

__version__ = "0.1.0"
# Bump when the generative model changes meaning (2: the stock between delivery and use, same_as).
MODEL_VERSION = "2"

from model.case import Case, load_case  # noqa: E402
from model.errors import InputError  # noqa: E402

__all__ = ["Case", "InputError", "MODEL_VERSION", "__version__", "load_case"]
