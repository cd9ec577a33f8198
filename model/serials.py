"""Serial numbers on recovered items: the German tank problem on the production path.

Each `serial` row is one item seen (used, recovered, photographed) on its `period_end` date t,
with its serial number in `value`. What is assumed, and why:

1. A block numbers every item the plant makes from the block's start to its end, exported or
   not, consecutively from the block's first serial in the order made; P(x) is the block's
   production from its start to model time x (the model's monthly production path, each
   month's rate spread evenly over the month).
2. An item seen used at t was made by t - use_lag (the model's own continuous use_lag, the
   lag the launches use: the sighting is on the same clock as the use it comes from) and,
   since it was exported, after exports began. Its item number s - first + 1 therefore lies
   in (P(a), P(b)], with a = max(export start, block start) and b = min(t - use_lag, block
   end): C = P(b) - P(a) candidates. Counting the items made by t instead (as if used the
   day it was made, exported or not) makes every serial look late and production low.
3. Which exported items are used and seen has nothing to do with their number, and the
   exported items are a share of production that does not depend on the number either. Then
   the j-th distinct item of a block (j = 1, 2, ..., in the order seen) is equally likely to
   be any candidate not seen before it:

       p(s_j) = 1 / (C(t_j) - j + 1)   for  P(a) <= s_j - first + 1 - 1/2 <= P(b),  else 0

   The export share cancels: with k items seen at one date, the exact likelihood is
   1 / (C (C-1) ... (C-k+1)) times the probability that at least k candidates were exported,
   which is taken as 1 (it is, unless the exported count is within a few of k). That product
   is 1 / (k! binom(C, k)), the likelihood of Höhle & Held (2006), whose posterior the tests
   check through the whole pipeline.

C is continuous (production is), and the discrete support P(a) < n <= P(b) is read with the
midpoint rule (the walls sit half an item inside), so that round(C) carries the discrete
posterior to second order in 1/C. NUTS needs a density without a cliff, so each wall is soft:
with g the relative gap (C's bound less the serial's midpoint, over the serial's count
s - first + 1/2; negative beyond the wall) and w = wall_width(k) = WALL / k (k: the block's
distinct items seen), the log-density gains min(g - w, 0) / w: untouched from one width
inside the wall on, falling linearly (by 1 per width) from there outwards. Why this wall:
- relative, because the posterior's width scales with the count: a wall of fixed width in
  items (it was half an item) is a cliff at 30,000 items, and every transition diverged;
- over k, because the German-tank posterior of log C falls as exp(-k log C) beyond the
  largest serial (relative sd about 1/k): the wall is then WALL of the posterior's width at
  any scale and any k, and NUTS's step-size adaptation sees the same problem everywhere.
  Measured on the pipeline (10 serials, a block of ~300): WALL = 0.01 needed steps of 0.002
  and 1,000-step trees (bulk ESS 220 of 4,000 draws); 0.05 gave steps of 0.008, ESS 900;
- linear rather than half-normal, because its gradient is bounded: the leapfrog energy
  error of a step into it grows with step / width, not with its square (a half-normal wall
  of the same width made hundreds of divergences where this one made none);
- one width inside the midpoint, so that the mass the soft wall takes from just inside
  balances the mass it lets just outside: the bias is then second order in WALL. With the
  wall at the midpoint itself, WALL = 0.05 moved the posterior mean of log C by 5% of its
  sd; shifted, by 0.3% (quadrature of the k = 3, 10, 30 German-tank posteriors), and its
  quantiles by under 0.3% of a sd.

Geometry (issue #14). A serial fixes the items made by its date less use_lag, and rate_before,
use_lag, the multiplier, completion and ramp trade against one another along that bound: a thin
curved ridge, cut by the walls, on which nutpie's diagonal metric needed about 1,000 leapfrog
steps a draw. When every sighting is in one block on one date (`Serials.one_bound`) and
rate_before's prior lives on (0, inf), the sampler's coordinate for rate_before is
u = log(rate_before) - ridge_shift(others), the log of the lowest rate the largest serial allows
given the other variables: the bound is u = 0 whatever they are, and the ridge is straight.
The map (others, u) -> (others, log rate_before) has a unit Jacobian, so the prior and the
posterior are those of before (tests/test_serials.py: the prior's density and draws, the joint
density at mapped points); the wall is unchanged. Measured (benchmarks/README.md, "The serial
ridge"): 10 serials of ~300 on one date, 68 leapfrog steps a draw against 561, ESS per
gradient about 30x, 0 divergences either way.

Sightings on several dates (issues #14, #19; build.SEVERAL_DATES_RULE): which sighting binds
changes with the other variables, so the candidate shift is the largest of every distinct
sighting's bound (`log_bounds`), each capped at RIDGE_CAP above the largest serial's
("capped"; uncapped, "max", the shift ran away
where an early sighting's bound soars), and use_lag is sampled on (0, lag_bound): below the
earliest sighting's date less its block's start. Beyond that lag the earliest sighting has no
item made, its late wall is a constant (a penalty of about 1 / wall width, no gradient), and
chains that wandered there stuck: "capped" alone did so on the serial recovery test's plant
(five sightings in month 7; R-hat 3.2, use_lag up to 9.2). The posterior has no mass there
(exp(-20) or less), use_lag's prior density is unchanged below the bound and its prior draws
(forward sampling) are unchanged everywhere. Measured (benchmarks/README.md, "Several dates,
use_lag bounded"): that plant in 99 leapfrog steps a draw against 841 with log(rate_before),
R-hat 1.007, ESS per gradient 11x; the programme's serial plant in 98 against about 1,000.
The largest serial's bound alone kept the 1,000-step trees, and so did nutpie's "low_rank"
metric (500 steps, ESS per gradient unchanged). Where an early sighting's wall meets a later
one's, steps must be smaller: at target acceptance 0.9 the programme's main fit diverged twice,
and its retry at 0.98 with twice the tuning cost more than the short trees saved, so a model
with such a coordinate is sampled at RIDGE_TARGET_ACCEPT (ShiftedLog.target_accept, which
model/sampler.py honours): there the programme's fit took 368 leapfrog steps a draw against
1,023 with log(rate_before), none diverging, with 2.3x its lowest bulk ESS (benchmarks/README.md,
"Several dates at target acceptance 0.95").

Blocks ([serials.<block>] in case.toml) count from their `start` month (default: the
window's start) to their `end` month (default: the window's end), with a known `first`
serial or an unknown one between `first_lower` (default 0) and the lowest serial seen.
A serial seen twice in a block is the same item: the second row is kept in the ledger and
reported as a duplicate but adds nothing to the likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

from model.case import SerialBlock
from model.errors import InputError, Problem
from model.evidence import modelled
from model.timeline import Window

# Wall width per distinct item seen, relative to the count a serial proves (module docstring).
WALL = 0.05
BLOCK_KEYS = {"start", "end", "first", "first_lower", "description"}


@dataclass(frozen=True)
class Block:
    name: str
    start: pd.Period
    end: pd.Period
    first: float | None  # known first serial, or None (then uniform on [first_lower, lowest])
    first_lower: float


@dataclass(frozen=True)
class Serials:
    """Serial rows in the order they enter the likelihood, as arrays over the `serial` dim."""

    ids: list[str]
    blocks: list[Block]
    block_of: np.ndarray  # index into blocks, per row
    serial: np.ndarray  # serial number per row
    order: np.ndarray  # distinct items of the block seen before this one (j - 1)
    time: np.ndarray  # model time of the end of the sighting's day
    block_start: np.ndarray  # model time of the start of the row's block
    block_end: np.ndarray  # model time of the end of the row's block
    seen: np.ndarray  # distinct items seen in the row's block (k)
    duplicate_of: list[str]  # id of the earlier row with the same serial, or ""
    lowest: np.ndarray  # per block: the lowest serial seen

    @property
    def weight(self) -> np.ndarray:
        return np.array([0.0 if d else 1.0 for d in self.duplicate_of])

    @property
    def width(self) -> np.ndarray:
        """Each sighting's wall width (wall_width of its block's distinct items)."""
        return wall_width(self.seen)

    @property
    def reference(self) -> int:
        """The sighting whose bound ridge_shift's "largest" measures from: the largest serial
        that counts (not a duplicate)."""
        return int(np.argmax(np.where(self.weight > 0, self.serial, -np.inf)))

    @property
    def one_bound(self) -> bool:
        """Every sighting in one block on one date: then the largest serial's bound is the
        binding one whatever the other variables are (ridge_shift, module docstring)."""
        return len(set(self.block_of)) == 1 and len(set(self.time)) == 1


@dataclass(frozen=True)
class SerialData:
    """What the likelihood reads of the sightings, as pm.Data (`serial_data`): the arrays of
    `Serials` on the `serial` dim, each block's lowest serial (the highest its unknown first
    serial can be) and the reference sighting's index (`ridge_shift`). The compiled graph is
    then the same after a sighting more, or another serial, date or duplicate (as after a
    ledger row more: model/build.py `_row_data`), and the rerun loads it from the disk caches
    instead of compiling it again (as constants, one sighting more compiled nutpie's model and
    the value-of-information refits' again, 43 s and 36 s for a serials-only case:
    benchmarks/serial_rerun.py). What decides the graph's shape stays a constant: the blocks, their
    known first serials, the ridge rule (model/build.py `ridge_rule`: one date or several),
    and on several dates use_lag's bound (lag_bound: PyMC's Interval takes constants)."""

    serial: pt.TensorVariable
    order: pt.TensorVariable
    time: pt.TensorVariable
    block_start: pt.TensorVariable
    block_end: pt.TensorVariable
    block_of: pt.TensorVariable
    weight: pt.TensorVariable
    width: pt.TensorVariable
    lowest: pt.TensorVariable  # per block
    reference: pt.TensorVariable  # Serials.reference


def serial_data(serials: Serials, ns: str = "") -> SerialData:
    """The sightings as pm.Data in the current model (`ns`: a programme plant's prefix of the
    dims), for the graph to read (SerialData)."""
    dims = f"{ns}serial"
    arrays = {
        f: pm.Data(f"serial_{f}", np.asarray(getattr(serials, f)), dims=dims)
        for f in ("serial", "order", "time", "block_start", "block_end", "weight", "width")
    }
    return SerialData(
        **arrays,
        block_of=pm.Data("serial_block_of", np.asarray(serials.block_of, dtype="int64"), dims=dims),
        lowest=pm.Data("serial_block_lowest", np.asarray(serials.lowest, dtype=float)),
        reference=pm.Data("serial_reference", np.int64(serials.reference)),
    )


def wall_width(seen):
    """Relative width of the wall for a block with `seen` distinct items (module docstring)."""
    return WALL / np.maximum(seen, 1)


def made_between(start, end, production):
    """Items made from model time `start` to `end` (per row; none where end <= start), month m
    covering [m, m + 1) at the rate production[m]. Piecewise linear in `end`, so continuous
    and differentiable (almost everywhere) in whatever `end` depends on, such as use_lag."""
    month = pt.arange(production.shape[0])
    start = pt.as_tensor(start)[:, None]
    end = pt.as_tensor(end)[:, None]
    share = pt.clip(pt.minimum(end, month + 1) - pt.maximum(start, month), 0.0, 1.0)
    return pt.sum(share * production[None, :], axis=1)


def candidates(serials: Serials | SerialData, production, use_lag, export_start: float):
    """(made, before) per sighting: the block's items made by t - use_lag (capped at the
    block's end), and those made before an item could be exported (before the export start,
    or none if the block starts later). The candidates are made - before."""
    exported_from = pt.clip(export_start, serials.block_start, serials.block_end)
    made_by = pt.minimum(serials.time - use_lag, serials.block_end)
    made = made_between(serials.block_start, made_by, production)
    before = made_between(serials.block_start, exported_from, production)
    return made, before


def serial_logp(made, before, order, needed, width):
    """Log-likelihood of each sighting (module docstring). `made`: the block's items made by
    the latest date the item could have been made; `before`: those made before it could be
    exported; `order`: distinct items of the block seen before it; `needed`: serial - first
    + 1, the item number the serial proves; `width`: the wall's relative width."""
    proven = needed - 0.5  # midpoint rule: the discrete n >= needed is N >= needed - 1/2
    available = made - before - order
    # Beyond a wall `available` may fall below 1; floor it there (the wall term dominates).
    safe = pt.switch(pt.gt(available, 0.5), available, 0.5)
    late = (made - proven) / proven  # < 0: the item was not made yet
    early = (proven - before) / proven  # < 0: the item was made before exports began
    walls = pt.minimum(late - width, 0.0) + pt.minimum(early - width, 0.0)
    return -pt.log(safe) + walls / width


# rate_before's floor: items made at rate 1 below which the bound stops growing (the bound is
# then far beyond anything its prior allows; the floor only keeps it finite).
RATE_ONE_FLOOR = 1e-2


def log_bounds(serials: Serials | SerialData, shape, use_lag, first):
    """Per sighting, the log of the lowest rate_before its serial allows given the other
    variables: its proven count over the items the plant makes at rate 1 (`shape`: the
    production path at rate_before = 1) by the latest date the item could be made."""
    made_by = pt.minimum(serials.time - use_lag, serials.block_end)
    per_rate = made_between(serials.block_start, made_by, shape)
    return pt.log(serials.serial - first + 0.5) - pt.log(per_rate + RATE_ONE_FLOOR)


# How ridge_shift picks the bound the coordinate is measured from (module docstring,
# "Geometry"): "largest", the largest serial's (sightings on one date); "capped", the largest
# of every sighting's, none more than RIDGE_CAP above the largest serial's (several dates);
# "max", uncapped, measured and not taken (benchmarks/profile_fit.py --ridge).
RIDGE_RULES = ("largest", "max", "capped")
RIDGE_CAP = 1.0  # in log rate_before: e times the largest serial's lowest rate
# The rules for several dates sample use_lag below lag_bound (module docstring, "Geometry").
LAG_BOUNDED_RULES = ("max", "capped")
# The target acceptance those rules sample at, at least (module docstring, "Geometry").
RIDGE_TARGET_ACCEPT = 0.95


def lag_bound(serials: Serials) -> float:
    """use_lag's upper end under LAG_BOUNDED_RULES: the earliest sighting's date less its
    block's start, over the sightings that count (not duplicates). A lag beyond it leaves
    that sighting no item made: its late wall is then a constant penalty of about
    1 / wall_width (over 20 log units), so the posterior has no mass there, and no gradient
    leads back from it (module docstring, "Geometry"). Sampled through an interval transform
    onto (0, lag_bound), use_lag's prior density is unchanged below the bound and its prior
    draws (forward sampling) are unchanged everywhere; only the region the sampler could get
    stuck in is cut from its coordinate."""
    keep = serials.weight > 0
    return float(np.min((serials.time - serials.block_start)[keep]))


def ridge_shift(serials: Serials | SerialData, shape, use_lag, first, rule: str = "largest"):
    """The shift of rate_before's ridge coordinate (ShiftedLog), from log_bounds (RIDGE_RULES):
    "largest", the largest serial's bound (on one date it is the binding one); "max", the
    largest of every distinct sighting's; "capped", that largest with each bound capped at
    RIDGE_CAP above the largest serial's (module docstring, "Geometry", for what each did to
    the sampler). Any function of the other variables keeps the posterior (ShiftedLog)."""
    if rule == "largest":
        ref = serials.reference
        serial, time, start, end = (
            pt.as_tensor(a)[ref]
            for a in (serials.serial, serials.time, serials.block_start, serials.block_end)
        )
        made_by = pt.minimum(time - use_lag, end)
        per_rate = made_between(start[None], made_by[None], shape)[0]
        return pt.log(serial - first[ref] + 0.5) - pt.log(per_rate + RATE_ONE_FLOOR)
    bounds = log_bounds(serials, shape, use_lag, first)
    # over the sightings that count (a duplicate's bound is its first sighting's or lower)
    keep = pt.gt(serials.weight, 0)
    if rule == "max":
        return pt.max(pt.switch(keep, bounds, -np.inf))
    if rule == "capped":  # no sighting's bound more than RIDGE_CAP above the largest serial's
        largest = ridge_shift(serials, shape, use_lag, first, "largest")
        return pt.max(pt.switch(keep, pt.minimum(bounds, largest + RIDGE_CAP), -np.inf))
    raise ValueError(f"unknown ridge rule {rule!r} (known: {', '.join(RIDGE_RULES)})")


class ShiftedLog(Transform):
    """rate_before's unconstrained coordinate on the serial ridge: log(rate_before) less the
    shift (ridge_shift) that the other variables set, so the serials' binding bound sits at
    0 whatever they are (module docstring, "Geometry"). The shift is the distribution's first
    parameter (model/build.py: shifted_prior); inputs are (size, shift, *prior parameters,
    rng). log(rate_before) = shift + u has d/du = 1 for fixed other variables, so the
    Jacobian is that of the plain log transform (log rate_before), and the prior and the
    posterior of rate_before are unchanged: only the sampler's coordinates move."""

    name = "ridge_log"

    def __init__(self, target_accept: float | None = None):
        # the lowest target acceptance this coordinate samples well at (model/sampler.py
        # raises a fit's to it); None: whatever the fit asks
        self.target_accept = target_accept

    def forward(self, value, *inputs):
        return pt.log(value) - inputs[1]

    def backward(self, value, *inputs):
        return pt.exp(value + inputs[1])

    def log_jac_det(self, value, *inputs):
        return value + inputs[1]


def serial_rows(case) -> Serials | None:
    """The case's serial sightings and blocks, validated against case.toml; None if none."""
    ev = case.evidence
    rows = modelled(ev)
    rows = rows[rows["kind"] == "serial"]
    if rows.empty:
        return None
    window: Window = case.window
    declared = case.serial_blocks
    blocks, problems = [], []
    names = list(declared) or ["main"]
    for name in names:
        block = declared.get(name) or SerialBlock(name, (), None, None, None, 0.0)
        for key in block.keys:
            if key not in BLOCK_KEYS:
                problems.append(
                    Problem(
                        str(case.input_files[0]),
                        f"[serials.{name}]",
                        key,
                        f"unknown key (allowed: {', '.join(sorted(BLOCK_KEYS))})",
                    )
                )
        start = pd.Period(block.start or str(window.start), freq="M")
        end = pd.Period(block.end or str(window.end), freq="M")
        if start < window.start or end > window.end or start > end:
            problems.append(
                Problem(
                    str(case.input_files[0]),
                    f"[serials.{name}]",
                    "start",
                    f"block months {start}..{end} must lie in the window "
                    f"{window.start}..{window.end}",
                )
            )
        blocks.append(Block(name, start, end, block.first, block.first_lower))
    index = {b.name: i for i, b in enumerate(blocks)}
    block_col = rows["block"] if "block" in rows else pd.Series("", index=rows.index)
    block_names = [b or names[0] for b in block_col.fillna("").astype(str)]
    for (_, row), b in zip(rows.iterrows(), block_names, strict=True):
        if b not in index:
            problems.append(
                Problem(
                    str(case.input_files[1]),
                    f"line {row['line']} (id '{row['id']}')",
                    "block",
                    f"no [serials.{b}] in the case file (declared: {', '.join(names)})",
                )
            )
        elif row["value"] != np.floor(row["value"]):
            problems.append(
                Problem(
                    str(case.input_files[1]),
                    f"line {row['line']} (id '{row['id']}')",
                    "value",
                    f"a serial number is a whole number, got {row['value']}",
                )
            )
    if problems:
        raise InputError(problems)

    frame = pd.DataFrame(
        {
            "id": rows["id"].to_numpy(),
            "block": [index[b] for b in block_names],
            "serial": rows["value"].to_numpy(float),
            "date": rows["period_end"].to_numpy(),
        }
    ).sort_values(["block", "date", "id"], kind="stable")
    seen: dict[tuple[int, float], str] = {}
    order, duplicate_of, times = [], [], []
    count: dict[int, int] = {}
    for r in frame.itertuples():
        key = (r.block, r.serial)
        duplicate_of.append(seen.get(key, ""))
        order.append(count.get(r.block, 0))
        if key not in seen:
            seen[key] = r.id
            count[r.block] = count.get(r.block, 0) + 1
        times.append(window.time_of(pd.Timestamp(r.date), end_of_day=True))
    block_of = frame["block"].to_numpy()
    # A block's months, in model time: from the start of its first to the end of its last.
    starts = np.array([float((b.start - window.start).n) for b in blocks])
    ends = np.array([float((b.end - window.start).n + 1) for b in blocks])
    lowest = np.array(
        [
            frame.loc[frame["block"] == i, "serial"].min()
            if (frame["block"] == i).any()
            else np.nan
            for i in range(len(blocks))
        ]
    )
    for i, block in enumerate(blocks):
        if block.first is not None and lowest[i] < block.first:
            message = f"serial {lowest[i]:.0f} was seen, below first {block.first:.0f}"
            where = f"[serials.{block.name}]"
            raise InputError([Problem(str(case.input_files[0]), where, "first", message)])
    return Serials(
        ids=frame["id"].tolist(),
        blocks=blocks,
        block_of=block_of,
        serial=frame["serial"].to_numpy(),
        order=np.array(order, dtype=float),
        time=np.array(times),
        block_start=starts[block_of],
        block_end=ends[block_of],
        seen=np.array([count.get(b, 0) for b in block_of], dtype=float),
        duplicate_of=duplicate_of,
        lowest=lowest,
    )
