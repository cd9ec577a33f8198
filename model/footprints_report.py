"""The footprints in the run's summary and report: what was outlined, the areas, the map.

`summary_block` runs before sampling (a bad footprints file stops the estimate as bad input)
and its dict goes into summary.json as `footprints`; the map and the report section are drawn
from that dict alone, like every other figure (no web tiles: the outlines on a blank ground,
in metres from their centre, so a report drawn offline looks the same).
"""

from __future__ import annotations

import numpy as np

from model.footprints import DERIVED, derive

ROLE_COLOURS = {
    "assembly": "tab:blue",
    "storage": "tab:orange",
    "housing": "tab:green",
    "unknown": "tab:gray",
}
MAP = "footprints.png"
CAPTION = (
    "The building outlines of the case's footprints file on the first and the last imagery "
    "date, coloured by role (hatched: the analyst is unsure, coloured by the likeliest role), "
    "each labelled with its id and its geodesic footprint area. Axes in metres from the "
    "outlines' centre; no map tiles."
)


def summary_block(case) -> dict | None:
    """The derivation as plain data for summary.json, or None for a case without
    [footprints]. Raises InputError (before any sampling) when the file is bad."""
    if "footprints" not in case.settings:
        return None
    d = derive(case)
    rows = case.evidence
    derived = rows[rows["note"].str.startswith(DERIVED)]
    stale = sorted(derived.index[~derived["note"].str.contains(d.sha256, regex=False)])
    current = sorted(derived.index[derived["note"].str.contains(d.sha256, regex=False)])
    return {
        "file": d.file.name,
        "sha256": d.sha256,
        "before": d.before,
        "after": d.after,
        "outlines": [
            {
                "id": f"{m.outline.building}@{m.outline.date}",
                "building": m.outline.building,
                "date": m.outline.date,
                "roles": m.outline.roles,
                "storeys": m.storeys,
                "storeys_assumed": m.storeys_assumed,
                "gsd_m": m.outline.gsd_m,
                "source": m.outline.source,
                "analyst": m.outline.analyst,
                "note": m.outline.note,
                "area_m2": m.area_m2,
                "area_sd_m2": m.sd_m2,
                "perimeter_m": m.perimeter_m,
                "shell": [list(p) for p in m.outline.shell],
                "holes": [[list(p) for p in h] for h in m.outline.holes],
            }
            for m in d.measured
        ],
        "readings": [_ratio(r) for r in d.readings],
        "workforce": _ratio(d.workforce) if d.workforce else None,
        "workforce_missing": d.workforce_missing,
        "ledger_rows": current,  # rows derived from this very file
        "stale_rows": stale,  # rows derived from an earlier version of it
    }


def _ratio(r) -> dict:
    return {
        "name": r.name,
        "probability": r.probability,
        "ratio": r.ratio,
        "lower": r.lower,
        "upper": r.upper,
        "after_m2": r.after_m2,
        "before_m2": r.before_m2,
        "polygons": r.ids,
    }


def footprint_map(block: dict):
    """Two panels, the first and the last imagery date, outlines in local metres."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon as Patch
    from pyproj import Transformer
    from shapely.geometry import Polygon

    points = np.array([p for o in block["outlines"] for p in o["shell"]])
    lon0, lat0 = points.mean(axis=0)
    aeqd = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +ellps=WGS84 +units=m"
    to_m = Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)

    def metres(ring):
        x, y = to_m.transform(*np.asarray(ring).T)
        return np.column_stack([x, y])

    dates = (block["before"], block["after"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained", sharex=True, sharey=True)
    for ax, when in zip(axes, dates, strict=True):
        for o in (o for o in block["outlines"] if o["date"] == when):
            role = max(o["roles"], key=o["roles"].get)
            sure = o["roles"][role] == 1
            shell = metres(o["shell"])
            ax.add_patch(
                Patch(
                    shell,
                    closed=True,
                    facecolor=ROLE_COLOURS[role],
                    alpha=0.45 if sure else 0.25,
                    hatch=None if sure else "//",
                    edgecolor="black",
                    lw=0.8,
                )
            )
            for hole in o["holes"]:
                ax.add_patch(Patch(metres(hole), closed=True, facecolor="white", edgecolor="black"))
            inside = Polygon(shell, [metres(h) for h in o["holes"]]).representative_point()
            cx, cy = inside.x, inside.y  # inside the outline, off its courtyards
            storeys = f" x{o['storeys']}" if o["storeys"] > 1 else ""
            ax.annotate(
                f"{o['building']}\n{o['area_m2']:,.0f} m²{storeys}",
                (cx, cy),
                ha="center",
                va="center",
                fontsize=7,
            )
        ax.set_title(f"{'before' if when == dates[0] else 'after'}: imagery of {when}")
        ax.set_aspect("equal")
        ax.autoscale_view()
        ax.set_xlabel("metres east")
    axes[0].set_ylabel("metres north")
    handles = [Patch([[0, 0]], facecolor=c, alpha=0.45, label=r) for r, c in ROLE_COLOURS.items()]
    fig.legend(handles=handles, fontsize=7, loc="outside right upper", frameon=False)
    return fig


def figures(summary: dict) -> dict[str, bytes]:
    """The map, when the run's case has footprints (report.write_report's hook)."""
    from model.plots import png

    block = summary.get("footprints")
    return {MAP: png(footprint_map(block))} if block else {}


def report_blocks(summary: dict) -> list[tuple]:
    """The report's footprints section: the map, each outline's area, and the ratio they give
    beside the case's other readings (the press's), with the weights the fit used."""
    block = summary.get("footprints")
    if not block:
        return []
    from model.report import fmt

    readings = {r["reading"]: r for r in summary.get("readings", [])}
    derived = {r["name"]: r for r in block["readings"]}
    rows = []
    for name, r in readings.items():
        mine = derived.get(name)
        rows.append(
            [
                name,
                f"footprints ({', '.join(mine['polygons'])})" if mine else "ledger rows",
                f"{mine['ratio']:.3f}" if mine else "",
                f"{r['ratio_low']:g}–{r['ratio_high']:g}",
                f"{r['prior_weight']:.0%}",
                f"{r['posterior_probability']:.0%}",
            ]
        )
    text = (
        f"The analyst's outlines in `{block['file']}` (sha256 `{block['sha256'][:12]}`): "
        f"assembly floor on {block['after']} against {block['before']}, geodesic areas on the "
        "WGS84 ellipsoid, 95% ranges from the digitising error (case.toml [footprints]). "
        "Each combination of uncertain roles is a reading, weighted by the analyst's "
        "probability."
    )
    if not all(name in readings for name in derived):
        text += " Some readings of the file are not in this run's ledger: run `capest footprints`."
    if block["stale_rows"]:
        text += (
            f" Ledger rows {', '.join(block['stale_rows'])} were derived from an earlier version "
            "of the file."
        )
    w = block["workforce"]
    row = [i for i in block["ledger_rows"] if i.startswith("workforce-")]
    workforce = (
        f"Housing floor area {fmt(w['after_m2'])} m² against {fmt(w['before_m2'])} m²: a "
        f"workforce ratio of {w['ratio']:.2f} (95% {w['lower']:g}–{w['upper']:g}; workers "
        "taken as proportional to housing floor area, an assumption), "
        + (f"in the fit as ledger row {row[0]}." if row else "not in the ledger.")
        if w
        else f"No workforce ratio: {block['workforce_missing']}."
    )
    outlines = [
        [
            o["id"],
            ", ".join(f"{k} {p:.0%}" if p < 1 else k for k, p in o["roles"].items()),
            f"{o['storeys']}{' (assumed)' if o['storeys_assumed'] else ''}",
            f"{o['area_m2']:,.0f} ± {o['area_sd_m2']:,.0f}",
            f"{o['gsd_m']:g}",
            o["source"],
        ]
        for o in block["outlines"]
    ]
    return [
        ("h2", "Building footprints"),
        ("p", text),
        ("img", MAP, CAPTION),
        (
            "table",
            ["reading", "from", "ratio", "range", "prior weight", "posterior probability"],
            rows,
        ),
        ("p", workforce),
        ("table", ["outline", "role", "storeys", "area m² (± sd)", "GSD m", "imagery"], outlines),
    ]
