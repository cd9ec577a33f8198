"""Building footprints (model/footprints.py): geodesic areas, the digitising error, refused
outlines, the two readers, and `capest footprints` writing through add-evidence's path.
Every outline here is synthetic (tests/footprints_data.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import load_case
from model.errors import InputError
from model.footprints import derive, digitising_sd, ledger_rows, read_footprints
from tests import footprints_data as synth

ROOT = Path(__file__).resolve().parents[1]


def _props(**extra) -> dict:
    base = {
        "building": "b1",
        "date": "2024-05-20",
        "source": "Synthetic imagery",
        "gsd_m": 0.5,
        "role": "assembly",
        "storeys": 1,
        "analyst": "synthetic",
        "note": "",
    }
    return base | extra


def _write(tmp_path: Path, features: list[dict], name="f.geojson") -> Path:
    path = tmp_path / name
    path.write_text(synth.geojson(features))
    return path


def _feature(rings, **props) -> dict:
    return {
        "type": "Feature",
        "properties": _props(**props),
        "geometry": {"type": "Polygon", "coordinates": rings},
    }


@pytest.mark.parametrize("lat", [0.0, 23.5, 45.0, 60.0, 75.0, -40.0])
@pytest.mark.parametrize(("w", "h", "angle"), [(120, 60, 0), (500, 300, 33), (35, 20, 70)])
def test_geodesic_area_of_rectangles_in_metres_within_0_1_percent(tmp_path, lat, w, h, angle):
    """A rectangle built in metres in a local azimuthal equidistant projection has area
    w x h on the ground; the geodesic area of its lon/lat outline matches it within 0.1%
    at every latitude (square degrees would be off by cos(lat) and more)."""
    ring = synth.rectangle(10.0, lat, 0, 0, w, h, angle)
    outline = read_footprints(_write(tmp_path, [_feature([ring])]))[0]
    from model.footprints import measure

    area = measure(outline, 1.0, 1).area_m2
    assert area == pytest.approx(w * h, rel=1e-3)


def _offset_polygon(vertices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each edge i (vertex i -> i+1, counter-clockwise) moved outwards by offsets[i]; the new
    vertices are where consecutive moved edges meet."""
    n = len(vertices)
    out = []
    for i in range(n):
        lines = []
        for j in (i - 1, i):
            a, b = vertices[j % n], vertices[(j + 1) % n]
            d = (b - a) / np.linalg.norm(b - a)
            normal = np.array([d[1], -d[0]])  # outwards for a counter-clockwise ring
            lines.append((a + offsets[j % n] * normal, d))
        (p1, d1), (p2, d2) = lines
        t = np.linalg.solve(np.column_stack([d1, -d2]), p2 - p1)[0]
        out.append(p1 + t * d1)
    return np.array(out)


def _shoelace(v: np.ndarray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@pytest.mark.parametrize(
    "vertices",
    [
        [(0, 0), (100, 0), (100, 100), (0, 100)],  # square
        [(0, 0), (200, 0), (200, 25), (0, 25)],  # 8:1 hall
        [(0, 0), (120, 0), (120, 40), (40, 40), (40, 90), (0, 90)],  # L-shape
    ],
)
def test_digitising_sd_matches_simulated_jittered_outlines(vertices):
    """The assumption (each edge off by Normal(0, (k GSD)^2)) simulated: 5,000 outlines with
    every edge moved independently; the sd of their areas matches digitising_sd within 4%
    (four Monte Carlo standard errors), and their mean the true area (no bias).
    A rule of perimeter x GSD (c = 1) would be off by half for the square: this fails it."""
    v = np.array(vertices, dtype=float)
    gsd, k = 3.0, 1.0
    rng = np.random.default_rng(20261202)
    areas = [_shoelace(_offset_polygon(v, rng.normal(0, k * gsd, len(v)))) for _ in range(5_000)]
    edges = np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)
    assert np.std(areas) == pytest.approx(digitising_sd(edges, gsd, k), rel=0.04)
    assert abs(np.mean(areas) - _shoelace(v)) < 4 * np.std(areas) / np.sqrt(len(areas))
    perimeter = edges.sum()
    # sd / (perimeter x GSD x k) lies between 1/sqrt(edges) (all equal) and 1/sqrt(2) (a
    # needle): 0.5 for a square, 0.44 for this L-shape
    share = digitising_sd(edges, gsd, k) / (perimeter * gsd * k)
    assert 1 / np.sqrt(len(v)) - 1e-9 <= share <= 1 / np.sqrt(2)


BOWTIE = [[0.0, 0.0], [0.001, 0.001], [0.001, 0.0], [0.0, 0.001], [0.0, 0.0]]


@pytest.mark.parametrize(
    ("rings", "props", "column", "words"),
    [
        ([BOWTIE], {}, "geometry", "Self-intersection"),
        ([synth.rectangle(0.01, 0.01, 0, 0, 50, 40, clockwise=True)], {}, "geometry", "clockwise"),
        (
            [
                synth.rectangle(0.01, 0.01, 0, 0, 50, 40),
                synth.rectangle(0.01, 0.01, 200, 0, 10, 10, clockwise=True),
            ],
            {},
            "geometry",
            "invalid outline",
        ),
        ([synth.rectangle(0.01, 0.01, 0, 0, 50, 40)[:-1]], {}, "geometry", "ends where it starts"),
        ([[[p[1], p[0] + 100] for p in BOWTIE]], {}, "geometry", "out of range"),
        ([synth.rectangle(0.01, 0.01, 0, 0, 50, 40)], {"role": "factory"}, "role", "factory"),
        (
            [synth.rectangle(0.01, 0.01, 0, 0, 50, 40)],
            {"role": {"assembly": 0.6, "storage": 0.6}},
            "role",
            "sum to 1.2",
        ),
        ([synth.rectangle(0.01, 0.01, 0, 0, 50, 40)], {"gsd_m": None}, "gsd_m", "metres"),
        ([synth.rectangle(0.01, 0.01, 0, 0, 50, 40)], {"date": "20/05/2024"}, "date", "YYYY"),
    ],
)
def test_invalid_outlines_are_refused_naming_file_building_and_date(
    tmp_path, rings, props, column, words
):
    path = _write(tmp_path, [_feature(rings, **props)])
    with pytest.raises(InputError) as err:
        read_footprints(path)
    [problem] = err.value.problems
    assert problem.file == str(path)
    assert problem.column == column
    assert words in problem.message
    if "date" not in props:
        assert "feature 1 (building 'b1', 2024-05-20)" in problem.row


def test_multipolygon_duplicate_and_changing_role_are_refused(tmp_path):
    ring = synth.rectangle(0.01, 0.01, 0, 0, 50, 40)
    multi = _feature([ring])
    multi["geometry"] = {"type": "MultiPolygon", "coordinates": [[ring]]}
    feats = [
        multi,
        _feature([ring], building="b2"),
        _feature([ring], building="b2"),
        _feature([ring], building="b2", date="2023-01-01", role="storage"),
    ]
    with pytest.raises(InputError) as err:
        read_footprints(_write(tmp_path, feats))
    text = str(err.value)
    assert "expected a Polygon" in text and "feature 1" in text
    assert "outlined twice" in text and "feature 3" in text
    assert "keeps one role" in text and "feature 4" in text


def test_kml_entities_are_refused(tmp_path):
    path = tmp_path / "f.kml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY a "x">]><kml>&a;</kml>')
    with pytest.raises(InputError, match="DOCTYPE"):
        read_footprints(path)


def test_committed_synthetic_files_are_what_the_generator_writes():
    feats = synth.features()
    assert (synth.CASE / "footprints.geojson").read_text() == synth.geojson(feats)
    assert (synth.CASE / "footprints.kml").read_text() == synth.kml(feats)
    lon, lat = np.array([p for f in feats for p in f["geometry"]["coordinates"][0]]).T
    assert np.all(np.abs(lon) < 0.02) and np.all(np.abs(lat) < 0.02)  # open sea, synthetic


def _case_copy(tmp_path: Path, footprints_file: str | None = None) -> Path:
    case = tmp_path / "case"
    shutil.copytree(synth.CASE, case)
    if footprints_file:
        text = (case / "case.toml").read_text()
        (case / "case.toml").write_text(
            text.replace('file = "footprints.geojson"', f'file = "{footprints_file}"')
        )
    return case


def _without_file(rows: list[dict], d) -> list[dict]:
    return [
        {k: v.replace(d.sha256, "<sha>").replace(d.file.name, "<file>") for k, v in r.items()}
        for r in rows
    ]


def test_kml_and_geojson_readers_give_the_same_rows(tmp_path):
    by_format = {}
    for name in ("footprints.geojson", "footprints.kml"):
        case = load_case(_case_copy(tmp_path / name, name))
        d = derive(case)
        by_format[name] = (d, _without_file(ledger_rows(case, d), d))
    (dg, rows_g), (dk, rows_k) = by_format.values()
    assert [m.area_m2 for m in dg.measured] == pytest.approx([m.area_m2 for m in dk.measured])
    for a, b in zip(rows_g, rows_k, strict=True):  # ids carry the file's hash: compare the rest
        assert {k: v for k, v in a.items() if k != "id"} == {
            k: v for k, v in b.items() if k != "id"
        }
    assert len(rows_g) == 3


def test_synthetic_derivation_numbers():
    """The synthetic plant: assembly 7,200 m² before; after, +4,800 m² (a 5,000 m² hall with a
    200 m² courtyard) and annex b3 (2,000 m², assembly with probability 0.6)."""
    d = derive(load_case(synth.CASE))
    by = {r.name: r for r in d.readings}
    assert by["footprints-b3-in"].ratio == pytest.approx(14_000 / 7_200, rel=1e-4)
    assert by["footprints-b3-out"].ratio == pytest.approx(12_000 / 7_200, rel=1e-4)
    assert by["footprints-b3-in"].probability == pytest.approx(0.6)
    assert d.workforce.ratio == pytest.approx((3_000 + 0.8 * 3_000) / 3_000, rel=1e-4)
    for r in d.readings:
        assert r.lower < r.ratio < r.upper


def _capest(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def _strip_derived(case: Path) -> None:
    """The case as it was before `capest footprints`: press row only, press weight only."""
    lines = (case / "evidence.csv").read_text().splitlines(keepends=True)
    (case / "evidence.csv").write_text("".join(x for x in lines if "footprints" not in x))
    toml = (case / "case.toml").read_text().splitlines(keepends=True)
    keep = [x for x in toml if not x.startswith(("footprints-", "# capest footprints"))]
    (case / "case.toml").write_text("".join(keep))


def test_capest_footprints_writes_rows_and_weights_once(tmp_path):
    case = _case_copy(tmp_path)
    _strip_derived(case)
    result = _capest("footprints", str(case), "--weight", "0.95")
    assert result.returncode == 0, result.stderr
    committed = load_case(synth.CASE)
    written = load_case(case)
    d = derive(written)
    # what the command wrote is what the committed case holds (same file, same rows)
    assert written.reading_weights == pytest.approx(committed.reading_weights)
    assert written.reading_weights["footprints-b3-in"] == pytest.approx(0.57)
    rows = written.evidence[written.evidence["note"].str.contains(d.sha256)]
    assert sorted(rows.index) == sorted(
        committed.evidence.index[committed.evidence["note"].str.contains(d.sha256)]
    )
    for _, row in rows.iterrows():
        assert d.sha256 in row["quote"]  # the file's hash and its polygon ids
        assert ("b1@2023-04-15" if row["kind"] == "area_ratio" else "h1@2023-04-15") in row["quote"]
    # the same file again: refused, nothing written
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    again = _capest("footprints", str(case))
    assert again.returncode == 2
    assert "already in the ledger" in again.stderr
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before
    assert _capest("validate", str(case)).returncode == 0


def test_a_bad_footprints_file_writes_nothing(tmp_path):
    case = _case_copy(tmp_path)
    _strip_derived(case)
    doc = json.loads((case / "footprints.geojson").read_text())
    doc["features"][2]["geometry"]["coordinates"] = [BOWTIE]
    (case / "footprints.geojson").write_text(json.dumps(doc))
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    result = _capest("footprints", str(case))
    assert result.returncode == 2
    assert "feature 3 (building 'b2', 2024-05-20)" in result.stderr
    assert "Self-intersection" in result.stderr
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before
    # and an estimate of the case is refused before sampling, as bad input
    assert _capest("validate", str(case)).returncode == 2


def test_new_outlines_supersede_the_rows_of_the_old_file(tmp_path):
    case = _case_copy(tmp_path)
    doc = json.loads((case / "footprints.geojson").read_text())
    b2 = next(f for f in doc["features"] if f["properties"]["building"] == "b2")
    b2["properties"]["storeys"] = 2  # the analyst saw a second floor on better imagery
    (case / "footprints.geojson").write_text(json.dumps(doc))
    result = _capest("footprints", str(case), "--weight", "0.95")
    assert result.returncode == 0, result.stderr
    ev = load_case(case).evidence
    old = ev[ev["id"].str.endswith("9f6f0bfb")]
    assert len(old) == 3 and (old["superseded_by"] != "").all()
    new = ev.loc[old["superseded_by"]]
    assert (new["superseded_by"] == "").all()
    in_row = new[new["reading"] == "footprints-b3-in"].iloc[0]
    assert in_row["lower"] < (7_200 + 2 * 4_800 + 2_000) / 7_200 < in_row["upper"]


@pytest.mark.slow(minutes=0.5)
def test_footprints_replace_the_press_ratio_end_to_end(tmp_path):
    """The synthetic case, from its files to the report: the footprints' readings carry 95% of
    the weight, so the capacity multiplier follows their ratio (about 1.7-2.0), not the
    press's 1.2-1.3, which its press-only scenario still shows; the report has the map and
    the derived ratios beside the press reading, with the numbers of the summary."""
    from model.pipeline import run_estimate
    from model.sampler import SamplerSettings

    case = _case_copy(tmp_path)
    settings = SamplerSettings(draws=300, tune=300, chains=2, prior_draws=400)
    run = run_estimate(case, settings, tmp_path / "reports", conditional=False)
    s = run.summary
    block = s["footprints"]
    readings = {r["reading"]: r for r in s["readings"]}
    for r in block["readings"]:
        assert readings[r["name"]]["ratio_low"] == r["lower"]
        assert readings[r["name"]]["ratio_high"] == r["upper"]
    assert readings["footprints-b3-in"]["prior_weight"] == pytest.approx(0.57)
    assert readings["press"]["prior_weight"] == pytest.approx(0.05)

    # the estimate follows the footprints: the posterior of the elasticity x ln(ratio) sits
    # with the footprints' readings, and the multiplier moves away from the press-only one
    press_only = next(x for x in s["scenarios"] if x["scenario"] == "press-only")
    footprints_weight = sum(readings[r["name"]]["posterior_probability"] for r in block["readings"])
    assert footprints_weight > 0.8
    assert s["quantities"]["capacity_multiplier"]["median"] > (
        press_only["capacity_multiplier"]["median"] * 1.15
    )

    html = (run.folder / "report.html").read_text()
    md = (run.folder / "report.md").read_text()
    assert (run.folder / "footprints.png").stat().st_size > 10_000
    assert "Building footprints" in md and "footprints.png" in md
    assert "data:image/png;base64" in html and "Building footprints" in html
    for r in block["readings"]:  # the report's ratios are the summary's
        assert f"{r['ratio']:.3f}" in md
        assert f"{r['lower']:g}–{r['upper']:g}" in md
    assert "7,200 ± 95" in md  # b1's geodesic area and its digitising sd
    saved = json.loads((run.folder / "summary.json").read_text())
    assert saved["footprints"]["sha256"] == block["sha256"]


def test_the_assumptions_are_checked_where_the_analyst_sets_them(tmp_path):
    case = _case_copy(tmp_path)
    text = (case / "case.toml").read_text()
    (case / "case.toml").write_text(text.replace("edge_sd_pixels = 1.0", "edge_sd_pixels = -1"))
    with pytest.raises(InputError) as err:
        derive(load_case(case))
    [problem] = err.value.problems
    assert problem.file.endswith("case.toml") and problem.row == "footprints.edge_sd_pixels"


def test_twice_the_digitising_error_widens_the_ranges(tmp_path):
    case = _case_copy(tmp_path)
    text = (case / "case.toml").read_text()
    (case / "case.toml").write_text(text.replace("edge_sd_pixels = 1.0", "edge_sd_pixels = 2.0"))
    one, two = derive(load_case(synth.CASE)), derive(load_case(case))
    for a, b in zip(one.readings, two.readings, strict=True):
        assert a.ratio == b.ratio
        assert np.log(b.upper / b.lower) == pytest.approx(2 * np.log(a.upper / a.lower), rel=0.01)


def test_a_reading_without_growth_is_refused(tmp_path):
    """Everything new is storage: the after / before ratio is 1, which the model's readings
    (log of ln ratio) cannot hold; the command says so instead of writing a broken row."""
    case = _case_copy(tmp_path)
    doc = json.loads((case / "footprints.geojson").read_text())
    for f in doc["features"]:
        if f["properties"]["building"] in ("b2", "b3"):
            f["properties"]["role"] = "storage"
    (case / "footprints.geojson").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="need growth"):
        derive(load_case(case))


def test_any_json_is_read_or_refused_with_an_input_error(tmp_path):
    """Fuzz: whatever a footprints file holds, the reader returns outlines or raises
    InputError (never another exception), so the command exits 2, not 3."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8)
    values = st.recursive(
        scalars,
        lambda c: (
            st.lists(c, max_size=5)
            | st.dictionaries(
                st.sampled_from(
                    ["type", "features", "geometry", "properties", "coordinates", "role"]
                )
                | st.text(max_size=4),
                c,
                max_size=4,
            )
        ),
        max_leaves=30,
    )
    ring = synth.rectangle(0.01, 0.01, 0, 0, 50, 40)

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(values, st.sampled_from(["doc", "props", "rings", "role"]))
    def check(value, where):
        feature = _feature([ring])
        doc = {"type": "FeatureCollection", "features": [feature]}
        if where == "doc":
            doc = value
        elif where == "props":
            feature["properties"] = value
        elif where == "rings":
            feature["geometry"]["coordinates"] = value
        else:
            feature["properties"]["role"] = value
        path = tmp_path / "f.geojson"
        path.write_text(json.dumps(doc, allow_nan=True))
        try:
            read_footprints(path)
        except InputError:
            pass

    check()
