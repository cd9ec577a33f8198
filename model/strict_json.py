"""Strict JSON for the files users and their programs read (summary.json, calibration.json,
`capest estimate --timings`).

Python's json writes NaN and Infinity, which JavaScript, jq and a scheduler reading summaries
reject. A number that is not finite (a Pareto k whose tail fit failed, a Monte Carlo error
that could not be computed) is written as null, which means "not defined"; the readers in
model/ take null where such a number can be (model/voi.py formats it).
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every float that is not finite (NaN, +-Infinity) replaced by None, in
    dicts, lists and tuples at any depth (tuples become lists, as JSON has them)."""
    if isinstance(value, float):  # numpy's float64 too (a subclass)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs) -> str:
    """json.dumps of `finite(value)` that refuses anything strict JSON cannot hold."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
