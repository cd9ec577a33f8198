"""Serial numbers on recovered items: the German tank problem on the production path.

Each `serial` row is one item seen (used, recovered, photographed) on its `period_end` date,
with its serial number in `value`. Items are numbered consecutively within a block from the
block's first serial, one number per item made, so an item seen at date t was one of the
N(t) items the block had produced by t. Taking the distinct items of a block in the order
they were seen, the j-th (j = 1, 2, ...) is modelled as equally likely to be any item made
by its date that was not seen before it:

    p(s_j | N) = 1 / (N(t_j) - j + 1)   if  s_j - first + 1 <= N(t_j),   else 0

When every item is seen at one date with N fixed, the product is 1 / (k! C(N, k)): the
likelihood of Höhle & Held (2006), whose posterior the tests check. N is continuous here
(production is), and the discrete support n >= s is read with the midpoint rule: the wall
sits at s - 1/2, so that round(N) carries the discrete posterior (to second order in 1/N).
NUTS needs a density without a cliff, so beyond the wall the log-density falls as a
half-normal of width `wall` items (0 inside: no bias where the data allow N).

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
import pytensor.tensor as pt

from model.errors import InputError, Problem
from model.evidence import modelled
from model.timeline import Window

WALL = 0.5  # items: width of the soft wall beyond the largest serial a date allows
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
    produced_weights: np.ndarray  # (row, month): the block's production up to the row's date
    duplicate_of: list[str]  # id of the earlier row with the same serial, or ""
    lowest: np.ndarray  # per block: the lowest serial seen

    @property
    def weight(self) -> np.ndarray:
        return np.array([0.0 if d else 1.0 for d in self.duplicate_of])


def serial_logp(produced, order, needed, wall: float = WALL):
    """Log-likelihood of each sighting (see module docstring). `produced`: items of the block
    made by the sighting's date; `order`: distinct items of the block seen before it;
    `needed`: serial - first + 1, the count the serial proves."""
    available = produced - order
    gap = produced - (needed - 0.5)  # >= 0 where the data allow this production
    # Beyond the wall `available` may fall below 1; floor it there (the wall term dominates).
    safe = pt.switch(pt.gt(available, 0.5), available, 0.5)
    return -pt.log(safe) - 0.5 * pt.sqr(pt.minimum(gap, 0.0) / wall)


def serial_rows(case) -> Serials | None:
    """The case's serial sightings and blocks, validated against case.toml; None if none."""
    ev = case.evidence
    rows = modelled(ev)
    rows = rows[rows["kind"] == "serial"]
    if rows.empty:
        return None
    window: Window = case.window
    declared = case.settings.get("serials", {})
    blocks, problems = [], []
    names = list(declared) or ["main"]
    for name in names:
        table = declared.get(name, {})
        for key in table:
            if key not in BLOCK_KEYS:
                problems.append(
                    Problem(
                        str(case.input_files[0]),
                        f"[serials.{name}]",
                        key,
                        f"unknown key (allowed: {', '.join(sorted(BLOCK_KEYS))})",
                    )
                )
        start = pd.Period(str(table.get("start", window.start)), freq="M")
        end = pd.Period(str(table.get("end", window.end)), freq="M")
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
        first = table.get("first")
        blocks.append(
            Block(
                name,
                start,
                end,
                None if first is None else float(first),
                float(table.get("first_lower", 0)),
            )
        )
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
    order, duplicate_of, weights = [], [], []
    count: dict[int, int] = {}
    for r in frame.itertuples():
        key = (r.block, r.serial)
        duplicate_of.append(seen.get(key, ""))
        order.append(count.get(r.block, 0))
        if key not in seen:
            seen[key] = r.id
            count[r.block] = count.get(r.block, 0) + 1
        block = blocks[r.block]  # its months up to the sighting's day
        last_day = min(pd.Timestamp(r.date), block.end.end_time.normalize())
        weights.append(window.overlap(block.start.start_time, last_day))
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
        block_of=frame["block"].to_numpy(),
        serial=frame["serial"].to_numpy(),
        order=np.array(order, dtype=float),
        produced_weights=np.array(weights),
        duplicate_of=duplicate_of,
        lowest=lowest,
    )
