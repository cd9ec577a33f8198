"""Same inputs and seed, same numbers: the summary's quantities of the session's small fit
equal those recorded in tests/golden/small_fit_numbers.json, which the code before the
variable registry (commit 4e34c4a) computed from the same case, priors, settings and seed.

When the case, the priors or the model change on purpose the recorded numbers no longer
apply and the test fails saying so: record them again with the new code, and say why in the
commit: `PYTHONPATH=$PWD python -m tests.test_numbers`.
"""

from __future__ import annotations

import json
import math

from .conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "small_fit_numbers.json"
NUMBERS = ("median", "mean", "intervals", "value", "mcse")


def numbers(summary: dict) -> dict:
    """The numbers of a summary that the inputs and seed fix (no labels, words or dates)."""
    return {
        "quantities": {
            n: {k: q[k] for k in NUMBERS if k in q} for n, q in summary["quantities"].items()
        },
        "prior_quantities": {
            n: {k: q[k] for k in NUMBERS if k in q} for n, q in summary["prior_quantities"].items()
        },
        "evidence_effect": summary["evidence_effect"],
        "diagnostics": {
            k: summary["diagnostics"][k]
            for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences")
        },
    }


def _same(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))} in one only"]
        return [d for k in a for d in _same(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _same(x, y, path)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300) else [f"{path}: {a} {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_same_inputs_and_seed_give_the_numbers_of_before(small_fit):
    from model.summary import summarize

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    summary = summarize(small_fit)
    prov = summary["provenance"]
    recorded = (golden["input_hash"], golden["model_version"], golden["sampler_settings"])
    assert (prov["input_hash"], prov["model_version"], prov["sampler_settings"]) == recorded, (
        "the case, priors, model or settings changed since the numbers were recorded: record "
        "them again (module docstring) and say why in the commit"
    )
    assert _same(numbers(summary), golden["numbers"]) == []
    # and the new field: every quantity has the registry's words
    assert all(q["label"] and "_" not in q["label"] for q in summary["quantities"].values())


def record(summary: dict, commit: str) -> dict:
    prov = summary["provenance"]
    return {
        "recorded_with": commit,
        "input_hash": prov["input_hash"],
        "model_version": prov["model_version"],
        "sampler_settings": prov["sampler_settings"],
        "numbers": numbers(summary),
    }


if __name__ == "__main__":  # record the numbers again (see the module's docstring)
    import subprocess

    from model import load_case
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings
    from model.summary import summarize

    from .conftest import CASE

    case = load_case(CASE)
    # the settings of conftest.small_fit
    settings = SamplerSettings(draws=200, tune=300, chains=2, prior_draws=400)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    out = record(summarize(fit(case, resolve_priors(case), settings)), commit)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
