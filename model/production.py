"""The monthly production path and the flow from production to what is observed.

Written with pytensor ops so the same functions build the PyMC graph and, through
`.eval()`, serve the tests and the simulator.
"""

from __future__ import annotations

import pytensor.tensor as pt

RAMP_SHARPNESS = 8.0  # how sharply the smooth ramp bends at its ends (1 / months of ramp)


def ramp(time, completion, ramp_months):
    """Share of the added capacity in use at `time`: 0 before completion, rising linearly to
    1 over `ramp_months`. The corners are smoothed (a difference of softplus terms) so that
    the sampler sees a continuous gradient in completion and ramp_months."""
    x = (time - completion) / ramp_months
    k = RAMP_SHARPNESS
    return (pt.softplus(k * x) - pt.softplus(k * (x - 1.0))) / k


def production_rate(time, rate_before, multiplier, completion, ramp_months):
    """Units per month at `time`: the old rate plus the added capacity as it ramps up."""
    return rate_before * (1.0 + (multiplier - 1.0) * ramp(time, completion, ramp_months))


def usage(
    time, rate_before, multiplier, completion, ramp_months, export_share, use_lag, export_start
):
    """Expected exported units used per month: the exported share of what was made `use_lag`
    months earlier, counting production from `export_start` on."""
    made = time - use_lag
    exported = pt.sigmoid(4.0 * (made - export_start))  # ~0 before exports began, smooth
    rate = production_rate(made, rate_before, multiplier, completion, ramp_months)
    return export_share * rate * exported


BOTTLENECK_SHARPNESS = 20.0  # k of the smooth minimum over stages, on the log scale


def smooth_min(log_values, k: float = BOTTLENECK_SHARPNESS):
    """A smooth minimum of log capacities: -log(sum(exp(-k x))) / k. It is never above the
    minimum and at most ln(n) / k below it (n stages; 3.5% for two, 6.9% for four), and its
    gradient shares the weight between stages that are close, so NUTS can move across the
    point where the binding stage changes (a hard min has a kink there)."""
    return -pt.logsumexp(-k * log_values) / k
