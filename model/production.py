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


def stock_flow(arrivals, hazard, initial=None, first=0):
    """The user's stock between delivery and use, month by month (last axis: months).

        Each month m the user holds what was left at the end of month m - 1 plus what arrived in m,
        and uses a share 1 - exp(-hazard[m]) of it, drawn at random from what it holds (so every
        item held is equally likely to be used, whatever its age). Use can never exceed what was
        delivered, and a month of heavy use empties the stock that later months would have drawn
        on: surges and pauses are what the stock does, not noise.

        The recursion S[m] = (S[m - 1] + arrivals[m]) exp(-hazard[m]) is written in closed form, so
        the graph has no scan: with L the cumulative hazard before month m, an item that arrived in
        month k <= m is still held at the start of month m with probability exp(-(L[m] - L[k])).
        That is a (months x months) triangle, cheap for windows of a few years (34 months: 1,156
        terms). `initial` is stock held before month `first` (its age counted from then; before
    `first` the hazard must be 0, as it is outside a plant's window in a stacked programme).

        Returns (use, held, mean_age): units used per month; units available to use in each month
        (stock at its start plus its arrivals); and the mean age in months, since arrival, of the
        items used in each month (0 where nothing is held)."""
    hazard = pt.as_tensor(hazard)
    n = hazard.shape[-1]
    before = pt.cumsum(hazard, axis=-1) - hazard  # L[m]: hazard of the months before m
    lower = pt.tril(pt.ones((n, n)))  # [m, k]: k <= m
    gap = (before[..., :, None] - before[..., None, :]) * lower  # >= 0 on the triangle
    survive = pt.exp(-gap) * lower
    arrivals = pt.as_tensor(arrivals)
    months = pt.arange(n)
    age = (months[:, None] - months[None, :]) * lower
    from_initial = initial * pt.exp(-before) if initial is not None else 0.0
    held = pt.sum(survive * arrivals[..., None, :], axis=-1) + from_initial
    aged = pt.sum(survive * age * arrivals[..., None, :], axis=-1) + from_initial * (months - first)
    use = -pt.expm1(-hazard) * held
    mean_age = aged / pt.maximum(held, 1e-9)
    return use, held, mean_age
