"""Priors as data: defaults in data/priors.toml, some derived from the reference class in
data/reference-class/, overridden per case by [priors.<name>] in case.toml.

Every resolved prior says where it came from: `reference-class` (borrowed from other plants),
`assumption` (a judgement, with its rationale), or `case` (set in the case file).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from model import variables
from model.case import Case, Measurement
from model.errors import InputError, Problem
from model.evidence import EVIDENCE_KINDS
from model.timeline import parse_date

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_PRIORS = DATA_DIR / "priors.toml"
REFERENCE_DIR = DATA_DIR / "reference-class"

# distribution -> its parameters, in the units of the quantity
PARAMS = {
    "LogNormal": ("median", "sigma"),  # sigma on the log scale
    "Beta": ("alpha", "beta"),
    "HalfNormal": ("sigma",),
    "Uniform": ("lower", "upper"),
}
SOURCES = ("reference-class", "assumption", "case")
NAMES = tuple(variables.select(variables.PRIOR))  # the priors every case needs
# Priors that only a case with evidence of a kind needs; priors.toml gives weak defaults for
# the workforce pair, none for the shipment pair (no source gives one), so a case with
# shipments must set them under [priors.<name>].
CONDITIONAL = {p: k.name for k in EVIDENCE_KINDS for p in k.priors}
# Each declared stage s ([stages.<s>] in case.toml) has the prior `stage_growth__<s>`: the
# default [stage_growth] of priors.toml unless the case sets [priors.stage_growth__<s>].
STAGE_PRIOR = "stage_growth"
_META = {"dist", "derive", "unit", "source", "rationale", "evidence"}


def stage_prior(stage: str) -> str:
    return f"{STAGE_PRIOR}__{stage}"


@dataclass(frozen=True)
class PriorSpec:
    name: str
    dist: str
    params: dict[str, float]  # numeric, in model units (dates already turned into months)
    unit: str
    source: str
    rationale: str
    evidence: tuple[str, ...] = ()
    derivation: str = ""  # how reference-class parameters were computed
    shown: dict[str, str] = field(default_factory=dict)  # params as the analyst wrote them

    @property
    def borrowed(self) -> bool:
        return self.source == "reference-class"

    def describe(self) -> str:
        args = ", ".join(f"{k}={self.shown.get(k, _fmt(v))}" for k, v in self.params.items())
        return f"{self.dist}({args})"


@dataclass(frozen=True)
class Priors:
    specs: dict[str, PriorSpec]
    noise: dict[str, float]  # reliability grade -> sd of log(1 + reported value)
    outlier_share: float  # prior chance that a row is wrong beyond its grade's noise
    outlier_sd: float  # sd of such a row, same scale
    noise_rationale: str
    bias_sd: float = 0.5  # sd of a source's shared bias on the log scale (bias groups)

    def __getitem__(self, name: str) -> PriorSpec:
        return self.specs[name]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "prior": s.name,
                    "distribution": s.describe(),
                    "unit": s.unit,
                    "source": s.source,
                    "borrowed": s.borrowed,
                    "rationale": s.rationale,
                    "derivation": s.derivation,
                }
                for s in self.specs.values()
            ]
        ).set_index("prior")


def resolve_priors(
    case: Case,
    defaults: Path = DEFAULT_PRIORS,
    reference_dir: Path = REFERENCE_DIR,
    scenario: str | None = None,
) -> Priors:
    """Defaults, filled in from the reference class, then the case's overrides, then (if
    given) those of one of the case's [scenarios.<name>]."""
    table = tomllib.loads(defaults.read_text(encoding="utf-8"))
    case_file = str(case.path / "case.toml")
    overrides = dict(case.settings.get("priors", {}))
    if scenario is not None:
        overrides.update(case.scenarios[scenario].priors)
    staged = [stage_prior(s) for s in case.stages]
    known = [*NAMES, *CONDITIONAL, *staged]
    problems = [
        Problem(
            case_file,
            "[priors]",
            f"priors.{k}",
            f"unknown prior (known: {', '.join(known)}; a stage's prior needs its [stages.<name>])",
        )
        for k in overrides
        if k not in known
    ]
    if problems:
        raise InputError(problems)
    derived = {
        "elasticity": derive_elasticity(pd.read_csv(reference_dir / "elasticity.csv")),
        "ramp_months": derive_ramp_months(pd.read_csv(reference_dir / "ramp_up.csv")),
    }
    derived["labour_elasticity"] = derive_labour_elasticity(derived["elasticity"])
    specs = {}
    kinds = set(case.evidence["kind"])
    needed = [n for n, kind in CONDITIONAL.items() if kind in kinds]
    for name in [*NAMES, *needed, *staged]:
        default = STAGE_PRIOR if name in staged else name
        entry, origin, where = dict(table.get(default, {})), str(defaults), f"[{default}]"
        if name in overrides:
            entry, origin, where = dict(overrides[name]), case_file, f"[priors.{name}]"
            entry.setdefault("source", "case")
        if not entry:
            raise InputError(
                [
                    Problem(
                        case_file,
                        "[priors]",
                        f"priors.{name}",
                        "no default exists for this prior: set it in the case file"
                        + (
                            f" (the ledger has '{CONDITIONAL[name]}' rows)"
                            if name in CONDITIONAL
                            else ""
                        ),
                    )
                ]
            )
        specs[name] = _spec(name, entry, derived, case, origin, where)
        if name in staged and specs[name].dist == "Uniform" and specs[name].params["lower"] <= 0:
            raise InputError([Problem(origin, where, "lower", "a stage's growth is > 0")])
    if specs["elasticity"].dist != "LogNormal":  # the size-ratio mixture is built on it
        raise InputError(
            [
                Problem(
                    case_file,
                    "[priors.elasticity]",
                    "dist",
                    "the elasticity prior must be LogNormal",
                )
            ]
        )
    # the case's [measurement] over data/priors.toml's; built-in defaults below where neither
    # sets a value
    measurement = case.measurement.over(Measurement.from_table(table.get("measurement", {})))
    noise = measurement.noise or {}
    missing = [g for g in "ABCD" if g not in noise or noise[g] <= 0]
    if missing:
        raise InputError(
            [
                Problem(
                    str(defaults),
                    "[measurement.noise]",
                    ",".join(missing),
                    "each reliability grade needs a noise sd > 0",
                )
            ]
        )
    outlier_share = 0.0 if measurement.outlier_share is None else measurement.outlier_share
    outlier_sd = 1.0 if measurement.outlier_sd is None else measurement.outlier_sd
    if not 0 <= outlier_share < 1 or outlier_sd <= 0:
        raise InputError(
            [
                Problem(
                    str(defaults),
                    "[measurement]",
                    "outlier_share",
                    "outlier_share must be in [0, 1) and outlier_sd > 0",
                )
            ]
        )
    bias_sd = 0.5 if measurement.bias_sd is None else measurement.bias_sd
    if bias_sd <= 0:
        raise InputError(
            [Problem(str(defaults), "[measurement]", "bias_sd", "bias_sd must be > 0")]
        )
    rationale = measurement.rationale or ""
    return Priors(specs, noise, outlier_share, outlier_sd, rationale, bias_sd)


def _spec(name, entry, derived, case, origin, where) -> PriorSpec:
    def bad(column, message):
        return InputError([Problem(origin, where, column, message)])

    unknown = set(entry) - _META - set(PARAMS.get(entry.get("dist"), ()))
    if entry.get("dist") not in PARAMS:
        raise bad("dist", f"expected one of {', '.join(PARAMS)}, got '{entry.get('dist')}'")
    if unknown:
        raise bad(
            ",".join(sorted(unknown)),
            f"not a parameter of {entry['dist']} (expected {', '.join(PARAMS[entry['dist']])})",
        )
    source = entry.get("source", "assumption")
    if source not in SOURCES:
        raise bad("source", f"expected one of {', '.join(SOURCES)}, got '{source}'")
    derivation = ""
    if "derive" in entry:
        if entry["derive"] not in derived:
            raise bad("derive", f"expected one of {', '.join(derived)}, got '{entry['derive']}'")
        values, derivation = derived[entry["derive"]]
        entry = {**values, **entry}  # explicit parameters in the file take precedence
    params, shown = {}, {}
    for p in PARAMS[entry["dist"]]:
        if p not in entry:
            raise bad(p, f"{entry['dist']} needs the parameter '{p}'")
        value = entry[p]
        if isinstance(value, str):  # a date, for priors on time
            try:
                value = case.window.time_of(parse_date(value))
            except ValueError as exc:
                raise bad(p, str(exc)) from exc
            shown[p] = entry[p]
        if not isinstance(value, int | float) or not np.isfinite(value):
            raise bad(p, f"expected a number, got {value!r}")
        params[p] = float(value)
    positive = [p for p in ("median", "sigma", "alpha", "beta") if p in params and params[p] <= 0]
    if positive:
        raise bad(positive[0], "must be > 0")
    if entry["dist"] == "Uniform" and params["lower"] >= params["upper"]:
        raise bad("lower", "lower must be below upper")
    return PriorSpec(
        name=name,
        dist=entry["dist"],
        params=params,
        unit=str(entry.get("unit", "")),
        source=source,
        rationale=str(entry.get("rationale", "")).strip(),
        evidence=tuple(entry.get("evidence", ())),
        derivation=derivation,
        shown=shown,
    )


def derive_elasticity(table: pd.DataFrame) -> tuple[dict[str, float], str]:
    """Median floor-area elasticity of output over the usable reference cases.

    elasticity_i = ln(output_after / output_before) / ln(area_after / area_before);
    the prior median is their geometric mean. The spread is not derived here: with one or
    two usable cases it would be meaningless, so it is set (and labelled) in priors.toml.
    """
    use = table[table["use"] == "yes"]
    e = np.log(use["output_after"] / use["output_before"]) / np.log(
        use["area_after"] / use["area_before"]
    )
    median = float(np.exp(np.mean(np.log(e))))
    cases = "; ".join(f"{c}: {v:.2f}" for c, v in zip(use["case"], e, strict=True))
    return {"median": round(median, 3)}, (
        f"geometric mean of ln(output ratio)/ln(area ratio) over {len(use)} usable case(s) "
        f"({cases}) = {median:.2f}"
    )


def derive_labour_elasticity(
    floor_area: tuple[dict[str, float], str],
) -> tuple[dict[str, float], str]:
    """Labour elasticity in capacity = area^a x workers^b, from the floor-area elasticity a
    under constant returns to scale (a + b = 1), an assumption priors.toml states."""
    a = floor_area[0]["median"]
    return {"median": round(1.0 - a, 3)}, (
        f"1 - floor-area elasticity ({a:.2f}) under constant returns to scale = {1 - a:.2f}"
    )


def derive_ramp_months(table: pd.DataFrame) -> tuple[dict[str, float], str]:
    """LogNormal for months from building ready to full rate, from the usable cases.

    Each case's lag is the geometric midpoint of its range (or its one bound, for a censored
    case). median = exp(mean log lag); sigma = sd(log lag) * sqrt(1 + 1/n), the predictive
    spread for one new plant under a normal model on the log scale.
    """
    use = table[table["use"] == "yes"]
    low = use["lag_months_low"].astype(float)
    high = use["lag_months_high"].astype(float)
    lag = np.where(low.notna() & high.notna(), np.sqrt(low * high), low.fillna(high))
    logs = np.log(lag)
    n = len(logs)
    median = float(np.exp(logs.mean()))
    sigma = float(logs.std(ddof=1) * np.sqrt(1 + 1 / n))
    cases = "; ".join(f"{c}: {v:.0f}" for c, v in zip(use["case"], lag, strict=True))
    return {"median": round(median, 2), "sigma": round(sigma, 3)}, (
        f"{n} usable case(s) ({cases} months); median = geometric mean = {median:.1f}, "
        f"sigma = sd(log) x sqrt(1 + 1/n) = {sigma:.2f}"
    )


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def pooled_hyperpriors(elasticity: PriorSpec, ramp_months: PriorSpec) -> dict[str, float]:
    """Hyperpriors of a programme's pooled parameters, from their single-plant LogNormal priors
    (median m, sigma s): log location ~ Normal(ln m, s / sqrt 2), plant-to-plant sd ~
    HalfNormal(s / sqrt 2). So a plant's log parameter has, a priori, the single-plant prior's
    mean and variance (s^2 / 2 + E[sd^2] = s^2), split evenly between not knowing the
    programme's typical value and plants differing from it. The even split is an assumption:
    the reference class has one usable elasticity case and five ramp-ups, too few to
    separate the two."""
    out = {}
    for key, spec in (("elasticity", elasticity), ("ramp", ramp_months)):
        if spec.dist != "LogNormal":
            raise ValueError(f"pooling needs a LogNormal prior for {spec.name}, got {spec.dist}")
        half = spec.params["sigma"] / np.sqrt(2)
        out |= {
            f"{key}_mu": float(np.log(spec.params["median"])),
            f"{key}_mu_sd": float(half),
            f"{key}_plant_sd": float(half),
        }
    return out
