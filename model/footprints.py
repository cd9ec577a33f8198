"""Building footprints an analyst digitised on dated imagery -> ledger rows.

A case's footprints file (GeoJSON, or KML) holds one polygon per building per imagery date
(data/README.md 3.10). Areas are geodesic on the WGS84 ellipsoid (pyproj's Geod), never in
square degrees; each outline is checked with shapely. The rows derived from them:

    area_ratio       assembly floor area at the last imagery date / at the first, one reading
                     per combination of the buildings whose role the analyst is unsure of
                     (that reading's weight: the analyst's probability of the combination)
    workforce_ratio  housing floor area last / first (workers taken as proportional to it)

Digitising error (an assumption, `[footprints] edge_sd_pixels` in case.toml): each edge of an
outline is placed off the true wall by an independent normal error of sd k x GSD, so the area's
sd is k x GSD x sqrt(sum of squared edge lengths) (first order; between perimeter x GSD x k /
sqrt(number of edges) and 0.71 x that: 0.5 x perimeter x GSD x k for a square).
tests/test_footprints.py checks it by simulating jittered outlines.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from model.errors import InputError, Problem
from model.evidence import GRADES, read_text

log = logging.getLogger(__name__)
ROLES = ("assembly", "storage", "housing", "unknown")
MAX_FOOTPRINTS_BYTES = 20_000_000  # a plant's outlines are kilobytes; refuse anything absurd
MAX_UNCERTAIN = 3  # buildings of uncertain assembly role: 2**3 = 8 readings at most
Z95 = 1.959964  # the derived range is the 95% interval of the ratio (normal on the log scale)
SETTINGS = {  # [footprints] in case.toml: key -> required
    "file": True,
    "source": True,
    "url": True,
    "reliability": True,
    "edge_sd_pixels": True,  # assumption: see the module docstring
    "unknown_storeys": True,  # assumption: storeys of an outline that does not give them
    "rationale": True,
}
DERIVED = "Derived by capest footprints"  # how a derived row's note starts
_BUILDING = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class Outline:
    """One building's outline on one imagery date, as the analyst digitised it."""

    where: str  # "feature 3" (GeoJSON) or "Placemark 3" (KML), for error messages
    building: str
    date: str  # YYYY-MM-DD
    source: str  # imagery source (e.g. "Planet SkySat")
    gsd_m: float
    roles: dict[str, float]  # role -> the analyst's probability; sums to 1
    storeys: int | None
    analyst: str
    note: str
    shell: list[tuple[float, float]]  # (lon, lat), closed, counter-clockwise
    holes: list[list[tuple[float, float]]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"building '{self.building}' on {self.date}"


@dataclass(frozen=True)
class Measured:
    """An outline's geodesic area and the digitising sd of it, in square metres."""

    outline: Outline
    area_m2: float
    perimeter_m: float
    sd_m2: float
    storeys: int
    storeys_assumed: bool

    @property
    def floor_m2(self) -> float:
        return self.area_m2 * self.storeys

    @property
    def floor_sd_m2(self) -> float:
        return self.sd_m2 * self.storeys


@dataclass(frozen=True)
class Ratio:
    """A floor-area ratio last / first with its 95% range, and what it was built from."""

    name: str  # the reading's name (area_ratio) or "workforce"
    probability: float  # the analyst's probability of this combination of roles
    ratio: float
    lower: float
    upper: float
    after_m2: float
    before_m2: float
    ids: list[str]  # polygon ids "<building>@<date>" that enter it
    note: str


# --- reading the file ---------------------------------------------------------------------


def read_footprints(path: str | Path) -> list[Outline]:
    """Every outline in a footprints file (.geojson / .json, or .kml), validated. Raises
    InputError listing every problem, each naming the file, the feature, building and date."""
    path = Path(path)
    text = read_text(path, "footprints file", MAX_FOOTPRINTS_BYTES)
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        raw, problems = _geojson(text, str(path))
    elif suffix == ".kml":
        raw, problems = _kml(text, str(path))
    else:
        message = f"expected a .geojson, .json or .kml file, got '{suffix}'"
        raise InputError([Problem(str(path), "file", "-", message)])
    outlines = []
    for where, props, rings, strict_winding in raw:
        outline, bad = _outline(str(path), where, props, rings, strict_winding)
        problems += bad
        if outline:
            outlines.append(outline)
    seen: dict[tuple[str, str], str] = {}
    for o in outlines:
        key = (o.building, o.date)
        if key in seen:
            message = f"{o.label} is outlined twice (also {seen[key]}): one polygon per date"
            problems.append(Problem(str(path), o.where, "building", message))
        seen.setdefault(key, o.where)
    roles: dict[str, tuple[dict, str]] = {}
    for o in outlines:
        first = roles.setdefault(o.building, (o.roles, o.where))
        if first[0] != o.roles:
            message = (
                f"building '{o.building}' has role {o.roles} here and {first[0]} in "
                f"{first[1]}: a building keeps one role (split it into two ids if it changed)"
            )
            problems.append(Problem(str(path), o.where, "role", message))
    if problems:
        raise InputError(problems)
    if not outlines:
        raise InputError([Problem(str(path), "file", "-", "the file holds no outlines")])
    return outlines


def _geojson(text: str, name: str) -> tuple[list, list[Problem]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [Problem(name, f"line {exc.lineno}", "-", f"not valid JSON: {exc.msg}")]
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        return [], [Problem(name, "file", "type", "expected a GeoJSON FeatureCollection")]
    features = doc.get("features")
    if not isinstance(features, list):
        return [], [Problem(name, "file", "features", "expected a list of features")]
    raw, problems = [], []
    for i, feature in enumerate(features, start=1):
        where = f"feature {i}"
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            problems.append(Problem(name, where, "properties", "expected an object"))
            continue
        where += _ids(props)
        if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
            got = geometry.get("type") if isinstance(geometry, dict) else geometry
            message = f"expected a Polygon (one per building per date), got {got!r}"
            problems.append(Problem(name, where, "geometry", message))
            continue
        rings = geometry.get("coordinates")
        raw.append((where, props, rings, True))  # RFC 7946: exterior counter-clockwise
    return raw, problems


def _ids(props: dict) -> str:
    building, when = props.get("building"), props.get("date")
    return f" (building '{building}', {when})" if building and when else ""


def _kml(text: str, name: str) -> tuple[list, list[Problem]]:
    """KML's Placemark / Polygon / ExtendedData subset that QGIS and Google Earth export.
    The standard library's parser is enough for it (a KML library would add a dependency for
    what is 40 lines); entity declarations are refused, so no entity can expand."""
    if re.search(r"<!(DOCTYPE|ENTITY)", text):
        return [], [Problem(name, "file", "-", "a KML file has no DOCTYPE or ENTITY")]
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [], [Problem(name, f"line {exc.position[0]}", "-", f"not valid XML: {exc}")]
    for element in root.iter():  # namespaces (kml/2.2, gx) play no part in this subset
        element.tag = element.tag.rsplit("}", 1)[-1]
    raw, problems = [], []
    for i, mark in enumerate(root.iter("Placemark"), start=1):
        props: dict[str, str] = {}
        for data in mark.iter("Data"):  # Google Earth: <Data name=".."><value>..</value>
            props[data.get("name", "")] = (data.findtext("value") or "").strip()
        for data in mark.iter("SimpleData"):  # QGIS: <SchemaData><SimpleData name="..">
            props[data.get("name", "")] = (data.text or "").strip()
        where = f"Placemark {i}{_ids(props)}"
        polygons = list(mark.iter("Polygon"))
        if len(polygons) != 1 or mark.find("MultiGeometry") is not None:
            message = f"expected one Polygon (one per building per date), got {len(polygons)}"
            problems.append(Problem(name, where, "geometry", message))
            continue
        rings = []
        for boundary in ("outerBoundaryIs", "innerBoundaryIs"):
            for ring in polygons[0].findall(f"{boundary}/LinearRing"):
                coords = []
                for token in (ring.findtext("coordinates") or "").split():
                    coords.append([_float(v) for v in token.split(",")[:2]])
                rings.append(coords)
        # KML sets no winding rule (Google Earth accepts either): outlines are oriented here.
        raw.append((where, props, rings, False))
    return raw, problems


def _is_number(value) -> bool:
    """A JSON number float() can hold (a 400-digit integer would overflow it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, float) or abs(value) < 10**300


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _outline(name, where, props, rings, strict_winding) -> tuple[Outline | None, list[Problem]]:
    import shapely
    from shapely.geometry import Polygon
    from shapely.validation import explain_validity

    problems: list[Problem] = []

    def bad(column: str, message: str) -> None:
        problems.append(Problem(name, where, column, message))

    building = str(props.get("building", "")).strip().lower()
    if not _BUILDING.match(building):
        bad("building", f"expected letters, digits and hyphens, got '{props.get('building')}'")
    when = str(props.get("date", "")).strip()
    try:
        date.fromisoformat(when)
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", when):
            raise ValueError
    except ValueError:
        bad("date", f"expected the imagery date as YYYY-MM-DD, got '{when}'")
    source = str(props.get("source", "")).strip()
    if not source:
        bad("source", "name the imagery (satellite or provider and its scene if known)")
    gsd = _float(str(props.get("gsd_m", "")))
    if not (math.isfinite(gsd) and 0 < gsd <= 100):
        bad("gsd_m", f"expected the imagery's ground sample distance in metres, got {gsd!r}")
    roles = _roles(props.get("role", ""), bad)
    storeys = props.get("storeys", "")
    if storeys in ("", None):
        storeys = None
    else:
        try:
            storeys = int(str(storeys))
            if not 1 <= storeys <= 100:
                raise ValueError
        except ValueError:
            bad("storeys", f"expected a whole number of storeys (1-100) or empty, got {storeys!r}")
            storeys = None
    analyst = str(props.get("analyst", "")).strip()
    if not analyst:
        bad("analyst", "name who digitised the outline (name or initials)")

    parsed: list[list[tuple[float, float]]] = []
    if not isinstance(rings, list) or not rings:
        bad("geometry", "a Polygon needs an exterior ring")
        return None, problems
    for r, ring in enumerate(rings):
        which = "exterior ring" if r == 0 else f"hole {r}"
        pairs = isinstance(ring, list) and all(
            isinstance(p, list) and len(p) >= 2 and all(_is_number(v) for v in p[:2]) for p in ring
        )
        if not pairs:
            bad("geometry", f"{which}: expected [longitude, latitude] pairs")
            return None, problems
        points = [(float(p[0]), float(p[1])) for p in ring]
        if not all(math.isfinite(x) and math.isfinite(y) for x, y in points):
            bad("geometry", f"{which}: a coordinate is not a number")
            return None, problems
        if any(not (-180 <= x <= 180 and -90 <= y <= 90) for x, y in points):
            bad("geometry", f"{which}: longitude, latitude out of range (lon first, in degrees)")
            return None, problems
        if len(points) < 4 or points[0] != points[-1]:
            bad("geometry", f"{which}: a ring has at least 4 positions and ends where it starts")
            return None, problems
        parsed.append(points)
    polygon = Polygon(parsed[0], parsed[1:])
    if not polygon.is_valid:
        bad("geometry", f"invalid outline: {explain_validity(polygon)}")
        return None, problems
    if strict_winding:
        if not shapely.LinearRing(parsed[0]).is_ccw:
            bad(
                "geometry",
                "the exterior ring runs clockwise; GeoJSON (RFC 7946) wants it "
                "counter-clockwise (holes clockwise): re-export it with the right-hand rule",
            )
        for r, hole in enumerate(parsed[1:], start=1):
            if shapely.LinearRing(hole).is_ccw:
                bad("geometry", f"hole {r} runs counter-clockwise; GeoJSON wants holes clockwise")
    else:
        polygon = shapely.geometry.polygon.orient(polygon, sign=1.0)
        parsed = [list(polygon.exterior.coords)] + [list(h.coords) for h in polygon.interiors]
    if problems:
        return None, problems
    return (
        Outline(
            where,
            building,
            when,
            source,
            gsd,
            roles,
            storeys,
            analyst,
            str(props.get("note", "")).strip(),
            parsed[0],
            parsed[1:],
        ),
        problems,
    )


def _roles(value, bad) -> dict[str, float]:
    """`assembly`, or the analyst's probabilities: {"assembly": 0.6, "storage": 0.4} (GeoJSON)
    or "assembly:0.6, storage:0.4" (either format)."""
    if isinstance(value, str) and ":" not in value:
        if value.strip() in ROLES:
            return {value.strip(): 1.0}
        bad("role", f"expected one of {', '.join(ROLES)} or role:probability pairs, got {value!r}")
        return {}
    if isinstance(value, str):
        pairs = [p.split(":", 1) for p in value.split(",") if p.strip()]
        value = {k.strip(): _float(v) for k, v in pairs}
    if not isinstance(value, dict) or not value:
        bad("role", f"expected a role or role:probability pairs, got {value!r}")
        return {}
    roles = {str(k): float(v) if _is_number(v) else math.nan for k, v in value.items()}
    unknown = [k for k in roles if k not in ROLES]
    if unknown:
        bad("role", f"unknown role(s) {', '.join(unknown)}: expected {', '.join(ROLES)}")
        return {}
    if not all(math.isfinite(p) and 0 <= p <= 1 for p in roles.values()):
        bad("role", "each role's probability is a number in [0, 1]")
        return {}
    if abs(sum(roles.values()) - 1) > 1e-6:
        bad("role", f"the role probabilities sum to {sum(roles.values()):g}, not 1")
        return {}
    return {k: p for k, p in roles.items() if p > 0}


# --- areas -------------------------------------------------------------------------------

_GEOD = None


def geod():
    global _GEOD
    if _GEOD is None:
        from pyproj import Geod

        _GEOD = Geod(ellps="WGS84")
    return _GEOD


def ring_area_perimeter(ring: list[tuple[float, float]]) -> tuple[float, float, np.ndarray]:
    """|geodesic area| (m^2), perimeter (m) and edge lengths (m) of a closed lon/lat ring."""
    lons, lats = zip(*ring, strict=True)
    area, perimeter = geod().polygon_area_perimeter(lons, lats)
    edges = np.asarray(geod().line_lengths(lons, lats))
    return abs(area), perimeter, edges


def measure(outline: Outline, edge_sd_pixels: float, unknown_storeys: int) -> Measured:
    """Geodesic area (holes subtracted) and its digitising sd (module docstring)."""
    area, perimeter, edges = ring_area_perimeter(outline.shell)
    for hole in outline.holes:
        a, p, e = ring_area_perimeter(hole)
        area, perimeter, edges = area - a, perimeter + p, np.concatenate([edges, e])
    sd = digitising_sd(edges, outline.gsd_m, edge_sd_pixels)
    storeys = outline.storeys or unknown_storeys
    return Measured(outline, area, perimeter, sd, storeys, outline.storeys is None)


def digitising_sd(edge_lengths_m, gsd_m: float, edge_sd_pixels: float) -> float:
    """sd of an outline's area when each edge is off by Normal(0, (k x GSD)^2) independently:
    moving an edge of length L outwards by d adds L x d, to first order."""
    return float(edge_sd_pixels * gsd_m * np.sqrt(np.sum(np.square(edge_lengths_m))))


# --- evidence ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Derivation:
    file: Path
    sha256: str
    before: str  # first imagery date
    after: str  # last imagery date
    measured: list[Measured]
    readings: list[Ratio]
    workforce: Ratio | None
    workforce_missing: str  # why there is no workforce row, when there is none


def footprint_settings(case) -> dict:
    """The case's [footprints] table, checked; InputError names case.toml and the key."""
    name = str(case.input_files[0]) if case.input_files else "case.toml"
    table = case.settings.get("footprints")
    if not isinstance(table, dict):
        raise InputError([Problem(name, "footprints", "-", "the case has no [footprints] table")])
    problems = [
        Problem(name, f"footprints.{k}", k, "required key is missing")
        for k, required in SETTINGS.items()
        if required and k not in table
    ]
    if problems:
        raise InputError(problems)
    k, storeys = table["edge_sd_pixels"], table["unknown_storeys"]
    if not isinstance(k, int | float) or isinstance(k, bool) or not 0 < k <= 10:
        problems.append(Problem(name, "footprints.edge_sd_pixels", "-", "expected a number > 0"))
    if not isinstance(storeys, int) or isinstance(storeys, bool) or not 1 <= storeys <= 100:
        message = "expected a whole number of storeys, 1-100"
        problems.append(Problem(name, "footprints.unknown_storeys", "-", message))
    if table["reliability"] not in GRADES:
        message = f"expected one of {', '.join(GRADES)}"
        problems.append(Problem(name, "footprints.reliability", "-", message))
    if not re.match(r"^https?://\S+$", str(table["url"])):
        problems.append(Problem(name, "footprints.url", "-", "expected an http(s) address"))
    file = Path(str(table["file"]))
    if file.is_absolute() or ".." in file.parts:
        message = "expected a file name inside the case folder"
        problems.append(Problem(name, "footprints.file", "-", message))
    if problems:
        raise InputError(problems)
    return table


def derive(case) -> Derivation:
    """Read the case's footprints file and derive its ratios. Raises InputError."""
    table = footprint_settings(case)
    path = case.path / str(table["file"])
    outlines = read_footprints(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    measured = [measure(o, table["edge_sd_pixels"], table["unknown_storeys"]) for o in outlines]
    dates = sorted({m.outline.date for m in measured})
    if len(dates) < 2:
        message = f"outlines from one imagery date only ({dates[0]}): a ratio needs two"
        raise InputError([Problem(str(path), "file", "date", message)])
    before, after = dates[0], dates[-1]
    return Derivation(
        path,
        digest,
        before,
        after,
        measured,
        _assembly_readings(measured, before, after, str(path)),
        *_workforce(measured, before, after),
    )


def _sum(measured: list[Measured], when: str, weight) -> tuple[float, float, list[str]]:
    """Floor area on one date (each outline weighted), its variance and the polygon ids."""
    area = var = 0.0
    ids = []
    for m in measured:
        w = weight(m.outline)
        if m.outline.date == when and w > 0:
            area += w * m.floor_m2
            var += w * m.floor_sd_m2**2 + w * (1 - w) * m.floor_m2**2  # role uncertainty
            ids.append(f"{m.outline.building}@{when}")
    return area, var, ids


def _ratio(name, probability, measured, before, after, weight, note) -> Ratio | None:
    a1, v1, ids1 = _sum(measured, after, weight)
    a0, v0, ids0 = _sum(measured, before, weight)
    if a0 <= 0 or a1 <= 0:
        return None
    sd_log = math.sqrt(v1 / a1**2 + v0 / a0**2)  # delta method: independent digitising
    ratio = a1 / a0
    lower, upper = ratio * math.exp(-Z95 * sd_log), ratio * math.exp(Z95 * sd_log)
    return Ratio(
        name, probability, ratio, round(lower, 3), round(upper, 3), a1, a0, ids0 + ids1, note
    )


def _assembly_readings(measured, before, after, name) -> list[Ratio]:
    """One reading per combination of the uncertain buildings' roles (assembly or not)."""
    p_assembly = {m.outline.building: m.outline.roles.get("assembly", 0.0) for m in measured}
    uncertain = sorted(b for b, p in p_assembly.items() if 0 < p < 1)
    if len(uncertain) > MAX_UNCERTAIN:
        message = (
            f"{len(uncertain)} buildings have an uncertain assembly role "
            f"({', '.join(uncertain)}); at most {MAX_UNCERTAIN} (each doubles the readings)"
        )
        raise InputError([Problem(name, "file", "role", message)])
    out = []
    for states in itertools.product((True, False), repeat=len(uncertain)):
        chosen = dict(zip(uncertain, states, strict=True))
        probability = math.prod(
            p_assembly[b] if s else 1 - p_assembly[b] for b, s in chosen.items()
        )
        suffix = "".join(f"-{b}-{'in' if s else 'out'}" for b, s in chosen.items())
        where = ", ".join(f"{b} {'assembly' if s else 'not assembly'}" for b, s in chosen.items())

        def weight(o, chosen=chosen):
            if o.building in chosen:
                return 1.0 if chosen[o.building] else 0.0
            return 1.0 if p_assembly[o.building] == 1 else 0.0

        note = (
            f"Roles assumed: {where} (the analyst's probability {probability:.3g})."
            if where
            else ""
        )
        r = _ratio(f"footprints{suffix}", probability, measured, before, after, weight, note)
        if r is None:
            message = f"no assembly floor on {before} or {after}" + (
                f" when {where}" if where else ""
            )
            raise InputError([Problem(name, "file", "role", message)])
        if r.lower < 1:
            message = (
                f"assembly floor ratio {r.ratio:.3f} ({r.lower}-{r.upper})"
                + (f" when {where}" if where else "")
                + ": the model's floor-area readings need growth (ratio above 1 throughout)"
            )
            raise InputError([Problem(name, "file", "role", message)])
        out.append(r)
    return out


def _workforce(measured, before, after) -> tuple[Ratio | None, str]:
    """Housing floor area last / first, expected over the analyst's role probabilities."""

    def weight(o):
        return o.roles.get("housing", 0.0)

    note = (
        "Assumption: workers in proportion to housing floor area; uncertain roles enter at "
        "their probability (expected area, with the role's variance)."
    )
    r = _ratio("workforce", 1.0, measured, before, after, weight, note)
    if r is None:
        return None, f"no housing outlined on both {before} and {after}"
    return r, ""


def ledger_rows(case, d: Derivation) -> list[dict[str, str]]:
    """The derived rows, each citing the file's sha256 and its polygon ids."""
    table = footprint_settings(case)
    short = d.sha256[:8]
    assumed = {f"{m.outline.building}@{m.outline.date}" for m in d.measured if m.storeys_assumed}
    common = {
        "period_end": d.after,
        "bound": "between",
        "unit": "ratio",
        "source": str(table["source"]),
        "url": str(table["url"]),
        "date_reported": d.after,
        "reliability": str(table["reliability"]),
    }

    def basis(r: Ratio) -> str:
        guessed = sorted({i.split("@")[0] for i in r.ids if i in assumed})
        text = (
            f"{DERIVED} from {d.file.name} (sha256 {d.sha256}). Geodesic areas on WGS84; 95% "
            "range from the digitising error (assumption: each edge off by "
            f"{table['edge_sd_pixels']:g} x GSD, case.toml [footprints])."
        )
        if guessed:
            text += (
                f" Assumption: {', '.join(guessed)} {table['unknown_storeys']} storey(s) "
                "(not given)."
            )
        return f"{text} {r.note}".strip()

    rows = []
    for r in d.readings:
        rows.append(
            {
                **common,
                "id": f"area-{r.name}-{short}",
                "kind": "area_ratio",
                "lower": f"{r.lower:g}",
                "upper": f"{r.upper:g}",
                "reading": r.name,
                "quote": _quote("assembly", r, d),
                "note": basis(r),
            }
        )
    if d.workforce is not None:
        r = d.workforce
        rows.append(
            {
                **common,
                "id": f"workforce-footprints-{short}",
                "kind": "workforce_ratio",
                "lower": f"{r.lower:g}",
                "upper": f"{r.upper:g}",
                "quote": _quote("housing", r, d),
                "note": basis(r),
            }
        )
    return rows


def _quote(what: str, r: Ratio, d: Derivation) -> str:
    return (
        f"{what} floor area {r.after_m2:,.0f} m2 on {d.after} / {r.before_m2:,.0f} m2 on "
        f"{d.before} = {r.ratio:.3f} (95% {r.lower:g}-{r.upper:g}); polygons "
        f"{', '.join(r.ids)}; file sha256 {d.sha256}"
    )


def add_weights(text: str, weights: dict[str, float], sha256: str, name: str) -> str:
    """case.toml's text with the readings' weights added under [area_ratio.weights] (a
    weight already there is kept: the analyst may have changed it)."""
    lines = text.splitlines(keepends=True)
    eol = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() == "[area_ratio.weights]")
    except StopIteration:
        message = "capest footprints adds its readings' weights under a [area_ratio.weights] line"
        raise InputError([Problem(name, "area_ratio.weights", "-", message)]) from None
    present = set()
    for line in lines[at + 1 :]:
        if line.lstrip().startswith("["):
            break
        if "=" in line and not line.lstrip().startswith("#"):
            present.add(line.split("=", 1)[0].strip())
    new = [f"{k} = {w:.6g}{eol}" for k, w in weights.items() if k not in present]
    if not new:
        return text
    comment = (
        f"# capest footprints: the analyst's probabilities x --weight (sha256 {sha256[:8]}){eol}"
    )
    return "".join(lines[: at + 1] + [comment, *new] + lines[at + 1 :])


def write(case_path: str | Path, weight: float = 1.0, dry_run: bool = False) -> list[dict]:
    """`capest footprints CASE`: derive the rows and append them to the ledger, with their
    readings' weights in case.toml, through add-evidence's validated, locked path; a row
    for a reading earlier footprints gave supersedes that row. Nothing is written on error."""
    from model import load_case
    from model.evidence import append_rows, candidate_path

    case = load_case(case_path)
    d = derive(case)
    rows = ledger_rows(case, d)
    ev = case.evidence
    live = ev[(ev["superseded_by"] == "")]
    for row in rows:
        if row["id"] in ev.index:
            message = f"already in the ledger: {d.file.name} has not changed since it was derived"
            raise InputError(
                [Problem(str(case.input_files[1]), f"id '{row['id']}'", "id", message)]
            )
        same = live[(live["kind"] == row["kind"]) & live["note"].str.startswith(DERIVED)]
        if row["kind"] == "area_ratio":
            same = same[same["reading"] == row["reading"]]
        if len(same):
            row["supersedes"] = str(same.index[-1])
    if dry_run:
        return rows
    case_file = case.input_files[0]
    weights = {r.name: weight * r.probability for r in d.readings}
    declared = case.settings["area_ratio"]["weights"]
    for name, w in weights.items():
        if name in declared and not math.isclose(declared[name], w, rel_tol=1e-6):
            # the analyst may have set it on purpose: kept, but said
            log.warning(
                "%s: [area_ratio.weights] %s = %g kept; the footprints give %.6g",
                case_file,
                name,
                declared[name],
                w,
            )
    append_rows(
        case.input_files[1],
        rows,
        check=lambda candidate: load_case(candidate_path(case_file), evidence=candidate),
        companions={case_file: lambda text: add_weights(text, weights, d.sha256, str(case_file))},
    )
    return rows
