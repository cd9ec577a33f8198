"""The variable registry (model/variables.py): every list of variable names is a selection of
it, every name in it is a variable the model makes, and every label is words."""

from __future__ import annotations

import re
import tomllib

from model import variables as v
from tests.conftest import CASE, ROOT


def test_every_list_of_names_is_a_selection_of_the_registry():
    from model import checks, compare, diagnostics, fit, plots, priors, programme, stacked, summary

    assert list(priors.NAMES) == v.select(v.PRIOR)
    assert fit.PRIOR_VARS == v.select(v.PRIOR_DRAW)
    assert fit.REFIT_VARS == v.select(v.REFIT)
    assert checks.HEADLINE == v.select(v.HEADLINE)
    assert diagnostics.CHECKED == v.select(v.CHECKED)
    assert [n for n, _, _ in plots.KEY_PARAMETERS] == v.select(v.PLOTTED)
    assert list(summary.EFFECT) == v.select(v.EFFECT)
    assert list(summary.POOLED_QUANTITIES) == v.select(v.POOLED)
    assert list(stacked.PLANT_PRIORS) == v.select(v.PLANT_PRIOR)
    assert programme.PROGRAMME_VARS == v.select(v.PROGRAMME)
    assert priors.CONDITIONAL == {
        "workforce_ratio": "workforce_ratio",
        "labour_elasticity": "workforce_ratio",
        "units_per_shipment": "shipments",
        "shipment_share": "shipments",
    }
    summary_like = {"quantities": {"production_2024": {}}}
    assert compare.headline_names(summary_like) == [
        *v.select(v.HEADLINE),
        "production_2024",
        "p_capacity_doubled",
    ]


# A list of two or more quoted registry names on consecutive items: the shape the old copies
# had (NAMES = ("rate_before", "elasticity", ...)).
_NAMES = "|".join(re.escape(q.name) for q in v.QUANTITIES)
_LIST = re.compile(rf'["\']({_NAMES})["\'],\s*["\']({_NAMES})["\']')


def test_no_list_of_variable_names_outside_the_registry():
    """Where a module still spells out several registered names in a row, it keeps a copy
    that will drift. (calibration.py is being rewritten to take its free variables from the
    model; until then its FREE is the one known copy.)"""
    allowed = {"variables.py", "calibration.py"}
    found = []
    for path in sorted((ROOT / "model").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in _LIST.finditer(text) if path.name not in allowed else ():
            # an evidence kind's declaration names the priors its rows need (the one place)
            if not text[: m.start()].endswith("priors=("):
                found.append(f"{path.name}: {m.group(0)}")
    assert not found, found


def test_every_prior_an_evidence_kind_needs_is_registered():
    from model.evidence import EVIDENCE_KINDS

    needed = {p for k in EVIDENCE_KINDS for p in k.priors}
    assert needed and needed <= set(v.REGISTRY)


def test_labels_are_words_and_unique():
    labels = [q.label for q in v.QUANTITIES]
    assert len(set(labels)) == len(labels)
    for q in v.QUANTITIES:
        assert q.label and "_" not in q.label, q.name  # words, not a code name
        assert q.scale in (v.LOG, v.LINEAR)
        assert set(q.inputs) <= set(v.REGISTRY), q.name
    assert v.label("production_2024") == "production in 2024"
    assert v.label("stage_growth__mixers") == "stage_growth__mixers"  # not registered: as is
    assert v.labelled("use_lag") == "time an exported item is held before use (use_lag)"
    assert v.unit_of("rate_before", "missiles") == "missiles/month"


def test_every_prior_is_resolved_for_a_case():
    """priors.toml or the case file gives each (completion only the case can give)."""
    from model import load_case
    from model.priors import resolve_priors

    defaults = tomllib.loads((ROOT / "data" / "priors.toml").read_text(encoding="utf-8"))
    assert set(v.select(v.PRIOR)) - {"completion"} <= set(defaults)
    assert set(v.select(v.PRIOR)) <= set(resolve_priors(load_case(CASE)).specs)


def test_registered_names_are_the_models_variables():
    """Built (not compiled) on the real case: every variable the registry says a fit keeps,
    checks or samples is one the model makes (elasticity is added after sampling, from
    log_gain_log), and every free variable the model samples is registered."""
    from model import load_case
    from model.build import build_model
    from model.priors import resolve_priors

    case = load_case(CASE)
    model = build_model(case, resolve_priors(case))
    made = set(model.named_vars) | {"elasticity"}
    # in the prior group only with the evidence or settings that add them
    optional = {"stage_growth", "workforce_ratio", "source_bias"}
    for role in (v.FREE, v.LATENT, v.CHECKED, v.HEADLINE, v.REFIT, v.PLOTTED, v.SHOWN):
        assert set(v.select(role)) <= made, role
    assert set(v.select(v.PRIOR_DRAW)) - optional <= made
    free = {rv.name for rv in model.free_RVs if "__" not in rv.name}  # not first_serial__<b>
    assert free <= set(v.REGISTRY), free - set(v.REGISTRY)


def test_summary_label_field_is_documented():
    assert "`label`" in (ROOT / "reports" / "README.md").read_text(encoding="utf-8")
