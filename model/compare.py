"""Compare a run with the previous run of the same case: what moved, and which new evidence
moved it. Works on summary.json contents only."""

from __future__ import annotations

import json
from pathlib import Path

from scipy import stats

from model import variables

# sd of a normal from its central 80% interval: width / (2 x 1.2816)
_Z80 = float(stats.norm.ppf(0.9))


def previous_summary(reports_dir: str | Path, case_id: str) -> tuple[dict | None, str | None]:
    """The summary of the run `latest` points at, and its folder name, if any."""
    path = Path(reports_dir) / case_id / "latest" / "summary.json"
    if not path.exists():
        return None, None
    return json.loads(path.read_text()), path.parent.resolve().name


def history(reports_dir: str | Path, case_id: str) -> list[dict]:
    """One entry per complete past run of the case, oldest first: when, on which evidence,
    and the headline medians and 95% intervals (from each run's summary.json)."""
    runs = sorted((Path(reports_dir) / case_id).glob("2*/summary.json"))
    entries = [history_entry(json.loads(p.read_text()), p.parent.name) for p in runs]
    return sorted(entries, key=by_evidence)


def by_evidence(entry: dict) -> tuple[str, str]:
    """Order runs by the evidence they used, then by when they ran: replays (--as-of) of
    older evidence come before later runs, whenever they were made."""
    return entry["evidence_as_of"], entry["created"]


def history_entry(summary: dict, run: str) -> dict:
    q = summary["quantities"]
    return {
        "run": run,
        "created": summary["created"],
        "input_hash": summary["provenance"]["input_hash"],
        "evidence_as_of": summary["provenance"].get("evidence_as_of", ""),
        "replay": bool(summary["provenance"].get("replay", False)),
        "passed": bool(summary.get("passed", summary["diagnostics"]["passed"])),
        "quantities": {
            n: {"median": q[n]["median"], "interval_95": q[n]["intervals"]["0.95"]}
            for n in variables.select(variables.HISTORY)
        }
        | {"p_capacity_doubled": {"median": q["p_capacity_doubled"]["value"]}},
    }


def headline_names(summary: dict) -> list[str]:
    q = summary["quantities"]
    years = sorted(n for n in q if n.startswith("production_"))
    return [*variables.select(variables.HEADLINE), *years, "p_capacity_doubled"]


def other_changes(old: dict, new: dict) -> list[str]:
    """What changed besides the inputs: model and capest versions, sampler settings (the
    sampler among them) and package versions ("-" where the older run did not record it)."""
    changes = []
    for key in ("model_version", "capest_version"):
        if old.get(key, "-") != new.get(key, "-"):
            changes.append(f"{key} {old.get(key, '-')} -> {new.get(key, '-')}")
    for group in ("sampler_settings", "packages"):
        before, after = old.get(group, {}), new.get(group, {})
        for key in sorted(set(before) | set(after)):
            if before.get(key, "-") != after.get(key, "-"):
                changes.append(f"{key} {before.get(key, '-')} -> {after.get(key, '-')}")
    return changes


def diff(previous: dict, current: dict, previous_run: str | None = None) -> dict:
    """Old and new headline quantities, the shift in units of the old posterior sd, and the
    evidence rows added or removed since, ranked by how far each moves rate_after now."""
    quantities = {}
    for name in headline_names(current):
        new, old = current["quantities"][name], previous["quantities"].get(name)
        if old is None:
            continue
        if new["unit"] == "probability":
            quantities[name] = {
                "old": old["value"],
                "new": new["value"],
                "change": new["value"] - old["value"],
            }
            continue
        lo, hi = old["intervals"]["0.8"]
        old_sd = (hi - lo) / (2 * _Z80)
        quantities[name] = {
            "unit": new["unit"],
            "old_median": old["median"],
            "new_median": new["median"],
            "old_intervals": old["intervals"],
            "new_intervals": new["intervals"],
            "shift_in_old_sd": (new["median"] - old["median"]) / old_sd if old_sd > 0 else None,
        }
    old_ids = set(previous["evidence"].get("ids", []))
    new_ids = set(current["evidence"].get("ids", []))
    added, removed = sorted(new_ids - old_ids), sorted(old_ids - new_ids)
    influence = next((c for c in current.get("checks", []) if c["name"] == "influence"), {})
    shifts = influence.get("shifts", {}).get("rate_after", {})
    moved = sorted((i for i in added if i in shifts), key=lambda i: -abs(shifts[i]))
    return {
        "previous_run": previous_run,
        "other_changes": other_changes(previous["provenance"], current["provenance"]),
        "previous_created": previous.get("created"),
        "previous_input_hash": previous["provenance"]["input_hash"],
        # The same files do not mean the same evidence: a replay (--as-of) leaves rows out.
        "same_inputs": previous["provenance"]["input_hash"] == current["provenance"]["input_hash"]
        and old_ids == new_ids
        and previous["provenance"].get("evidence_as_of")
        == current["provenance"].get("evidence_as_of"),
        "quantities": quantities,
        "evidence_added": added,
        "evidence_removed": removed,
        "evidence_superseded": sorted(
            set(current["evidence"].get("superseded", {}))
            - set(previous["evidence"].get("superseded", {}))
        ),
        "added_rows_by_influence": [{"id": i, "rate_after_shift_sd": shifts[i]} for i in moved],
    }
