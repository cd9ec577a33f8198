"""SYNTHETIC building outlines for tests and for data/cases/synthetic-footprints.

Every outline is invented. They sit near 0.01 N 0.01 E ("Null Island", open sea in the Gulf of
Guinea), where no plant stands, so nobody can mistake them for a real site. Rectangles are
drawn in metres in a local azimuthal equidistant projection and converted to lon/lat, so their
true areas are known. Regenerate the case's files with `python -m tests.footprints_data`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pyproj import Transformer

CASE = Path(__file__).resolve().parents[1] / "data" / "cases" / "synthetic-footprints"
CENTRE = (0.01, 0.01)  # lon, lat: open sea, obviously synthetic


def local_to_lonlat(lon0: float, lat0: float):
    aeqd = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +ellps=WGS84 +units=m"
    return Transformer.from_crs(aeqd, "EPSG:4326", always_xy=True)


def rectangle(lon0, lat0, x, y, width, height, angle_deg=0.0, clockwise=False):
    """A closed lon/lat ring of a width x height (m) rectangle centred x, y metres from
    (lon0, lat0), turned by angle_deg; counter-clockwise unless asked otherwise."""
    t = local_to_lonlat(lon0, lat0)
    a = math.radians(angle_deg)
    corners = [(-width / 2, -height / 2), (width / 2, -height / 2), (width / 2, height / 2)]
    corners.append((-width / 2, height / 2))
    if clockwise:
        corners.reverse()
    ring = []
    for u, v in corners + corners[:1]:
        px = x + u * math.cos(a) - v * math.sin(a)
        py = y + u * math.sin(a) + v * math.cos(a)
        lon, lat = t.transform(px, py)
        ring.append([round(lon, 9), round(lat, 9)])
    return ring


BEFORE, AFTER = "2023-04-15", "2024-05-20"
# building, role, storeys, (x, y, width, height, angle) in metres, dates, hole (x, y, w, h)
BUILDINGS = [
    ("b1", "assembly", 1, (0, 0, 120, 60, 0), (BEFORE, AFTER), None),
    ("b2", "assembly", 1, (0, 110, 100, 50, 0), (AFTER,), (0, 110, 20, 10)),
    ("b3", {"assembly": 0.6, "storage": 0.4}, None, (110, 60, 50, 40, 0), (AFTER,), None),
    ("s1", "storage", 1, (-110, 0, 40, 30, 0), (BEFORE, AFTER), None),
    ("h1", "housing", 3, (0, -120, 50, 20, 0), (BEFORE, AFTER), None),
    ("h2", {"housing": 0.8, "unknown": 0.2}, 3, (70, -120, 50, 20, 0), (AFTER,), None),
]
NOTES = {"b3": "could be storage: no vehicles seen at its doors"}


def features() -> list[dict]:
    lon0, lat0 = CENTRE
    out = []
    for building, role, storeys, (x, y, w, h, angle), dates, hole in BUILDINGS:
        for when in dates:
            rings = [rectangle(lon0, lat0, x, y, w, h, angle)]
            if hole:
                rings.append(rectangle(lon0, lat0, *hole, clockwise=True))
            props = {
                "building": building,
                "date": when,
                "source": "Synthetic imagery (not a real scene)",
                "gsd_m": 0.5,
                "role": role,
                "storeys": storeys,
                "analyst": "synthetic",
                "note": NOTES.get(building, ""),
            }
            out.append(
                {
                    "type": "Feature",
                    "properties": props,
                    "geometry": {"type": "Polygon", "coordinates": rings},
                }
            )
    return out


def geojson(feats: list[dict]) -> str:
    doc = {"type": "FeatureCollection", "name": "SYNTHETIC footprints", "features": feats}
    return json.dumps(doc, indent=1) + "\n"


def kml(feats: list[dict]) -> str:
    """The same outlines as KML (Google Earth's <Data> form), rings as written above."""

    def ring(coords):
        text = " ".join(f"{lon},{lat},0" for lon, lat in coords)
        return f"<LinearRing><coordinates>{text}</coordinates></LinearRing>"

    marks = []
    for f in feats:
        p = dict(f["properties"])
        if isinstance(p["role"], dict):
            p["role"] = ", ".join(f"{k}:{v:g}" for k, v in p["role"].items())
        data = "".join(
            f'<Data name="{k}"><value>{"" if v is None else v}</value></Data>' for k, v in p.items()
        )
        rings = f["geometry"]["coordinates"]
        inner = "".join(f"<innerBoundaryIs>{ring(r)}</innerBoundaryIs>" for r in rings[1:])
        marks.append(
            f"<Placemark><name>{p['building']} {p['date']}</name><ExtendedData>{data}"
            f"</ExtendedData><Polygon><outerBoundaryIs>{ring(rings[0])}</outerBoundaryIs>"
            f"{inner}</Polygon></Placemark>"
        )
    body = "\n".join(marks)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">'
        f"<Document><name>SYNTHETIC footprints</name>\n{body}\n</Document></kml>\n"
    )


if __name__ == "__main__":
    feats = features()
    (CASE / "footprints.geojson").write_text(geojson(feats))
    (CASE / "footprints.kml").write_text(kml(feats))
