"""Every model quantity once: its code name, the words an analyst reads, unit, meaning, the
roles it plays and the scale it is compared on. Every list of variable names elsewhere
(priors, kept draws, checked draws, figures, the summary, the programme models) is a
selection of this registry, so a new quantity is one entry here.

Units may contain `{unit}`, the case's unit (e.g. "missiles"): `unit_of` fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass

# Roles. A quantity may have several; each selection below keeps the registry's order.
HEADLINE = "headline"  # the report's headline; sensitivity and influence are measured on it
REFIT = "refit"  # kept from every refit (each reading, scenario, row left out)
PRIOR = "prior"  # has a prior in data/priors.toml that every case needs
FREE = "free"  # a scalar the sampler moves (calibration's free parameters)
LATENT = "latent"  # sampled too, but one per month, not a parameter an analyst reads
PRIOR_DRAW = "prior draw"  # kept in the saved prior group (when the model has it)
CHECKED = "checked"  # R-hat and ESS are checked on it in every fit
PLOTTED = "plotted"  # a panel of the prior-against-posterior figure
SHOWN = "shown"  # in summary.json's quantities besides the headline and yearly production
EFFECT = "effect"  # what the evidence decided (contraction and z-score) is computed for it
PLANT_PRIOR = "plant prior"  # a per-plant vector in the stacked programme model
PROGRAMME = "programme"  # kept in a programme's prior group (totals and pooled terms)
POOLED = "pooled"  # a programme's pooled term, summarised with its prior
HISTORY = "history"  # its median and 95% interval are kept in the run history
SHARED = "shared"  # pooled across a programme's plants: a plant may not set its own prior
RESTS_ON = "rests on"  # the report names the assumptions it rests on when priors decide it

LOG, LINEAR = "log", "linear"


@dataclass(frozen=True)
class Quantity:
    name: str
    label: str  # what the report calls it
    unit: str
    description: str
    roles: frozenset[str]
    scale: str = LOG  # log for positive quantities whose uncertainty is multiplicative
    inputs: tuple[str, ...] = ()  # what it is made of, to name the priors that decide it


def _q(name, label, unit, description, roles, scale=LOG, inputs=()) -> Quantity:
    return Quantity(name, label, unit, description, frozenset(roles), scale, tuple(inputs))


# The order is the reading order of the summary, the figures and the report's sentences
# (the prior predictive draws do not depend on it: checked when exported_flow was added).
QUANTITIES = (
    # first: the one rate the launch and transfer rows see directly (what they decide)
    _q(
        "exported_flow",
        "exported flow before the expansion",
        "{unit}/month",
        "exported units a month before the expansion",
        {PRIOR_DRAW, SHOWN, EFFECT, REFIT},
    ),
    _q(
        "rate_before",
        "production rate before the expansion",
        "{unit}/month",
        "production rate before the expansion",
        {HEADLINE, REFIT, PRIOR, FREE, PRIOR_DRAW, CHECKED, PLOTTED, EFFECT, PLANT_PRIOR, HISTORY}
        | {PROGRAMME, RESTS_ON},
        inputs=("export_share",),
    ),
    _q(
        "rate_after",
        "production rate at full capacity after the expansion",
        "{unit}/month",
        "production rate at full capacity after the expansion",
        {HEADLINE, REFIT, PRIOR_DRAW, CHECKED, PLOTTED, EFFECT, HISTORY, PROGRAMME, RESTS_ON},
        inputs=("export_share", "capacity_multiplier"),
    ),
    _q(
        "capacity_multiplier",
        "capacity multiplier (after / before)",
        "ratio",
        "capacity after / capacity before",
        {HEADLINE, REFIT, PRIOR_DRAW, CHECKED, PLOTTED, EFFECT, PROGRAMME},
        inputs=("elasticity",),
    ),
    _q(
        "elasticity",
        "floor-area elasticity of output",
        "-",
        "floor-area elasticity of output",
        {PRIOR, PLOTTED, SHOWN, EFFECT, SHARED},
    ),
    _q(
        "completion",
        "completion of the new building",
        "months since window start",
        "new building complete, ramp starts",
        {PRIOR, FREE, PRIOR_DRAW, CHECKED, PLOTTED, SHOWN, EFFECT, PLANT_PRIOR},
        scale=LINEAR,
    ),
    _q(
        "ramp_months",
        "ramp-up time to full rate",
        "months",
        "months from completion to full rate",
        {PRIOR, FREE, PRIOR_DRAW, CHECKED, PLOTTED, SHOWN, EFFECT, SHARED},
    ),
    _q(
        "export_share",
        "share of production exported",
        "share",
        "share of production exported",
        {PRIOR, FREE, PRIOR_DRAW, CHECKED, PLOTTED, SHOWN, EFFECT, PLANT_PRIOR},
        scale=LINEAR,
    ),
    _q(
        "use_lag",
        "time an exported item is held before use",
        "months",
        "mean months an exported item is held in the user's stock before use",
        {PRIOR, FREE, PRIOR_DRAW, CHECKED, PLOTTED, SHOWN, EFFECT, PLANT_PRIOR},
    ),
    _q(
        "burst_sd",
        "month-to-month change in the pace of use",
        "log scale",
        "sd of the log monthly pace of use around its mean",
        {PRIOR, FREE, PRIOR_DRAW, CHECKED, PLANT_PRIOR},
    ),
    _q(
        "reading_probability",
        "probability of each reading of the floor-area ratio",
        "probability",
        "posterior probability of each reading of the size ratio",
        {PRIOR_DRAW},
        scale=LINEAR,
    ),
    _q(
        "log_gain_log",
        "elasticity x floor-area readings",
        "log scale",
        "log(elasticity x ln floor-area ratio) = log(ln capacity multiplier)",
        {FREE, PRIOR_DRAW},
        scale=LINEAR,
    ),
    _q(
        "use_z",
        "month's pace of use (standardised)",
        "sd",
        "latent monthly use: the standardised log pace of use in each month",
        {LATENT},
        scale=LINEAR,
    ),
    _q(
        "production",
        "monthly production",
        "{unit}/month",
        "units produced in each month",
        {PRIOR_DRAW, PROGRAMME},
    ),
    _q(
        "production_by_year",
        "production by year",
        "{unit}",
        "units produced in each calendar year of the window",
        {REFIT, PRIOR_DRAW, CHECKED, PROGRAMME},
    ),
    _q("usage", "monthly use", "{unit}/month", "units used in each month", set()),
    _q("stock", "user's stock", "{unit}", "units held by the user at each month's end", set()),
    _q(
        "p_capacity_doubled",
        "probability that capacity at least doubled",
        "probability",
        "probability that capacity at least doubled",
        set(),
        scale=LINEAR,
    ),
    _q(
        "predicted",
        "predicted value of each row",
        "row's unit",
        "what each modelled ledger row measures, before measurement noise",
        {PRIOR_DRAW},
    ),
    _q(
        "evidence",
        "measured value of each row",
        "log(1 + value)",
        "each modelled ledger row as measured",
        {PRIOR_DRAW},
        scale=LINEAR,
    ),
    # Only in cases with the evidence or settings that add them.
    _q(
        "stage_growth",
        "growth of each production stage",
        "ratio",
        "stage capacity after / before",
        {PRIOR_DRAW},
    ),
    _q(
        "workforce_ratio",
        "workforce after / before",
        "ratio",
        "ratio of workers after the expansion to before",
        {PRIOR_DRAW},
    ),
    _q(
        "labour_elasticity",
        "workforce elasticity of output",
        "-",
        "exponent of the worker ratio in the capacity multiplier",
        set(),
    ),
    _q(
        "units_per_shipment",
        "units per carrying shipment",
        "{unit}",
        "units a shipment that carries the product holds",
        set(),
    ),
    _q(
        "shipment_share",
        "share of shipments that carry the product",
        "share",
        "share of seen shipments that carry the product",
        set(),
        scale=LINEAR,
    ),
    _q(
        "source_bias",
        "shared bias of a source's figures",
        "log scale",
        "multiplicative bias shared by the rows of a bias group",
        {PRIOR_DRAW},
        scale=LINEAR,
    ),
    # A programme's pooled terms (model/programme.py).
    _q(
        "elasticity_typical",
        "typical floor-area elasticity in the programme",
        "-",
        "the programme's typical floor-area elasticity (median plant)",
        {PROGRAMME, POOLED},
    ),
    _q(
        "elasticity_plant_sd",
        "plant-to-plant spread of the elasticity",
        "log scale",
        "plant-to-plant sd of the log elasticity",
        {PROGRAMME, POOLED},
    ),
    _q(
        "ramp_months_typical",
        "typical ramp-up time in the programme",
        "months",
        "the programme's typical ramp-up time (median plant)",
        {PROGRAMME, POOLED},
    ),
    _q(
        "ramp_plant_sd",
        "plant-to-plant spread of the ramp-up time",
        "log scale",
        "plant-to-plant sd of the log ramp-up time",
        {PROGRAMME, POOLED},
    ),
)
REGISTRY = {q.name: q for q in QUANTITIES}


def select(role: str) -> list[str]:
    """Names of the quantities with `role`, in registry order."""
    return [q.name for q in QUANTITIES if role in q.roles]


def label(name: str) -> str:
    """The analyst's words for a variable; a yearly production `production_<year>` is
    "production in <year>"; a name not in the registry (a stage's prior, a serial block)
    is shown as it is."""
    if name in REGISTRY:
        return REGISTRY[name].label
    year = name.removeprefix("production_")
    if year.isdigit():
        return f"production in {year}"
    return name


def labelled(name: str) -> str:
    """`label (name)`, for tables where an analyst may look the name up (priors, case.toml)."""
    words = label(name)
    return name if words == name else f"{words} ({name})"


def unit_of(name: str, unit: str) -> str:
    """The quantity's unit with the case's unit filled in."""
    return REGISTRY[name].unit.format(unit=unit)
