"""capest benchmarks: end to end, samplers, scaling, plants and many cases. Prints tables and
writes benchmarks/results.json.

    make bench                      (all sections: about 2 hours on 2 cores)
    .venv/bin/python benchmarks/run.py --only e2e,scaling --repeats 1

Every figure comes from a fresh process (`capest estimate ...`), timed from outside, with its
peak memory from os.wait4. The machine is shared and noisy, so the tables report medians over
repetitions and ratios of figures measured in the same run; never compare across runs.

Sections (--only)
  e2e       `capest estimate` on the February 11 case at default settings, cold (empty
            PyTensor and numba caches) and warm (the caches of the cold run), per sampler:
            nutpie (the default), PyMC's NUTS on numba, PyMC's NUTS on C (PyMC 5's default);
            for the default also warm after one row is added (`capest add-evidence`, a
            synthetic row: the rerun issue #19 describes, where the previous run's refits
            must be reweighted to a new ledger, not only read back).
            Split into the stages the CLI records (--timings); floor = Python with the
            libraries imported + the default's main fit's pure sampling time. The sampler
            comparison comes from the same runs: bulk ESS per second of the main fit's
            sampling for the slowest headline parameter, and divergences.
  scaling   synthetic cases (benchmarks/synthetic.py) of 24-240 months and 10-1,000 evidence
            rows, `--no-conditional`: wall time, sampling time per gradient evaluation, peak
            memory, posterior.nc size, and the growth exponent b of a figure ~ size^b.
  plants    synthetic programmes of 1-50 plants x 120 months (--plants): the same figures,
            nutpie at every size and PyMC's C NUTS at the largest (--plant-samplers).
  many      `capest report --all` on 1, 4 and 16 synthetic cases against the same cases
            estimated one after another (few draws: this measures the orchestration).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from synthetic import PROGRAMME_TOTALS, write_case, write_programme  # noqa: E402

from model.timing import ESTIMATE_SAID  # noqa: E402

CASE = ROOT / "data" / "cases" / "february-11-plant"
# The row the "added" run appends: synthetic, for timing only (never in data/); a launches
# count of the kind analysts add, in a month the ledger has no count for.
ADDED_ROW = [
    *("--id", "launches-synthetic-2025-03", "--kind", "launches"),
    *("--period-start", "2025-03-01", "--period-end", "2025-03-31"),
    *("--lower", "5", "--bound", "at_least", "--unit", "missiles"),
    *("--source", "synthetic benchmark row", "--url", "https://example.org/synthetic"),
    *("--date-reported", "2025-04-02", "--reliability", "C"),
    *("--quote", "synthetic: timing a rerun after one added row"),
]
CAPEST = [sys.executable, "-m", "model.cli"]
SAMPLERS = ["nutpie", "pymc", "pymc-c"]
HEADLINE = ["rate_before", "capacity_multiplier", "completion", "ramp_months", "export_share"]


def run(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command in a fresh process: wall seconds, peak RSS (GiB), exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # 1 = report written with a failed check, still a timing
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {code}:\n{stderr[-3000:]}")
    # ru_maxrss is in KiB on Linux; PyMC's NUTS samples in child processes, not counted here.
    return {"wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20, "exit": code}


def cache_env(folder: Path) -> dict:
    """Point PyTensor's compile cache and numba's cache at `folder` (empty = cold)."""
    return {
        "PYTENSOR_FLAGS": f"base_compiledir={folder / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(folder / "numba"),
    }


def estimate(case: Path, reports: Path, caches: Path, *extra: str) -> dict:
    timings = reports / "timings.json"
    cmd = [*CAPEST, "estimate", str(case), "--reports-dir", str(reports), "--timings", str(timings)]
    out = run([*cmd, *extra], cache_env(caches))
    stages = json.loads(timings.read_text())
    folder = max(p for p in (reports / case.name).glob("2*") if p.is_dir())
    out |= {"stages": stages, "report": str(folder)}
    out["posterior_mb"] = (folder / "posterior.nc").stat().st_size / 1e6
    return out


def sampler_quality(report: Path, sampling_s: float) -> dict:
    """Bulk ESS per second of sampling for the slowest headline parameter of the main fit."""
    import arviz as az
    import xarray as xr

    tree = xr.open_datatree(report / "posterior.nc", engine="netcdf4")
    post = tree["posterior"].to_dataset()[HEADLINE]
    ess = az.ess(post, method="bulk")
    worst = min(HEADLINE, key=lambda n: float(ess[n]))
    return {
        "slowest": worst,
        "ess_bulk": float(ess[worst]),
        "ess_per_s": float(ess[worst]) / sampling_s,
        "divergences": int(tree["sample_stats"]["diverging"].sum()),
    }


def import_floor() -> float:
    """Wall time of a process that only starts Python and imports what an estimate imports,
    as `capest` starts (its collector and PyTensor settings, `tune_process`) and without its
    shutdown (`capest` freezes its objects before it; here os._exit skips it)."""
    code = "import os, model.cli as c; c.tune_process(); "
    code += "import model.fit, model.summary, model.report, model.checks; os._exit(0)"
    return run([sys.executable, "-c", code])["wall_s"]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def bench_e2e(repeats: int, baseline_repeats: int, samplers: list[str], tmp: Path) -> dict:
    results: dict = {"import_s": median([import_floor() for _ in range(repeats)])}
    for name in samplers:
        cold, warm, added = [], [], []
        for r in range(repeats if name == "nutpie" else baseline_repeats):
            caches = tmp / f"caches-{name}-{r}"  # empty: a cold run fills it
            reports = tmp / f"reports-{name}-{r}"
            case = tmp / f"case-{name}-{r}" / CASE.name  # a copy: the added run writes to it
            shutil.copytree(CASE, case)
            cold.append(estimate(case, reports, caches, "--sampler", name))
            warm.append(estimate(case, reports, caches, "--sampler", name))
            line = f"  {name} rep {r + 1}: cold {cold[-1]['wall_s']:.0f} s, warm "
            line += f"{warm[-1]['wall_s']:.0f} s"
            if name == "nutpie":
                run([*CAPEST, "add-evidence", str(case), *ADDED_ROW])
                added.append(estimate(case, reports, caches, "--sampler", name))
                line += f", one row added {added[-1]['wall_s']:.0f} s"
            print(line, flush=True)
        results[name] = {"cold": cold, "warm": warm} | ({"added": added} if added else {})
    return results


def summarise_e2e(e2e: dict, samplers: list[str]) -> dict:
    table = {}
    for name in samplers:
        row = {}
        for kind in ("cold", "warm", "added"):
            if kind not in e2e[name]:  # "added": the default sampler only
                continue
            runs = e2e[name][kind]
            row[f"{kind}_s"] = median([r["wall_s"] for r in runs])
            row[f"{kind}_stages"] = {
                k: median([r["stages"][k] for r in runs])
                for k in runs[0]["stages"]
                if k != "fit stages"
            }
            row[f"{kind}_fit_stages"] = {
                k: median([r["stages"]["fit stages"][k] for r in runs])
                for k in runs[0]["stages"]["fit stages"]
            }
        warm = e2e[name]["warm"]
        main = [r["stages"]["fit stages"]["sampling (main fit)"] for r in warm]
        quality = [sampler_quality(Path(r["report"]), s) for r, s in zip(warm, main, strict=True)]
        row |= {
            "peak_rss_gib": max(r["peak_rss_gib"] for r in warm),
            "posterior_mb": median([r["posterior_mb"] for r in warm]),
            "sampling_s": median(
                [
                    sum(
                        v
                        for k, v in r["stages"]["fit stages"].items()
                        if k.startswith("sampling") and "count" not in k
                    )
                    for r in warm
                ]
            ),
            "main_fit_sampling_s": median(main),
            "slowest": quality[0]["slowest"],
            "ess_per_s": median([q["ess_per_s"] for q in quality]),
            "divergences": max(q["divergences"] for q in quality),
            "compiles": warm[0]["stages"]["fit stages"].get("compile (count)", 0),
        }
        table[name] = row
    return table


def bench_scaling(tmp: Path) -> dict:
    sizes = [("months", m, 100) for m in (24, 60, 120, 240)]
    sizes += [("rows", r, 60) for r in (10, 100, 1000)]
    caches = tmp / "caches-scaling"
    out = []
    for axis, n, other in sizes:
        months, rows = (n, other) if axis == "months" else (other, n)
        case = write_case(tmp / "scaling" / f"{axis}-{n}", months=months, rows=rows)
        r = estimate(case, tmp / f"reports-scaling-{axis}-{n}", caches, "--no-conditional")
        import xarray as xr

        tree = xr.open_datatree(Path(r["report"]) / "posterior.nc", engine="netcdf4")
        steps = int(tree["sample_stats"]["n_steps"].sum())
        sampling = r["stages"]["fit stages"]["sampling (main fit)"]
        out.append(
            {
                "axis": axis,
                "size": n,
                "months": months,
                "rows": rows,
                "wall_s": r["wall_s"],
                "sampling_s": sampling,
                "us_per_gradient": 1e6 * sampling / steps,
                "peak_rss_gib": r["peak_rss_gib"],
                "posterior_mb": r["posterior_mb"],
            }
        )
        print(f"  {axis} {n}: {r['wall_s']:.0f} s", flush=True)
    exponents = {}
    for axis in ("months", "rows"):
        pts = [p for p in out if p["axis"] == axis]
        x = np.log([p["size"] for p in pts])
        for figure in ("wall_s", "us_per_gradient", "peak_rss_gib", "posterior_mb"):
            slope = np.polyfit(x, np.log([p[figure] for p in pts]), 1)[0]
            exponents[f"{figure} vs {axis}"] = float(slope)
    return {"points": out, "exponents": exponents}


def bench_plants(counts: list[int], samplers: list[str], tmp: Path) -> dict:
    """Synthetic programmes of 1-50 plants x 120 months (12 rows each), one fit each, warm:
    wall time, sampling time, bulk ESS/s of the slowest programme total, divergences; the
    baseline samplers at the largest size only (they take far longer)."""
    import arviz as az
    import xarray as xr

    out = []
    for name in samplers:
        for n in counts if name == "nutpie" else counts[-1:]:
            case = write_programme(tmp / "plants" / f"programme-{n}", plants=n, months=120, rows=12)
            caches = tmp / f"caches-plants-{name}"
            reports = tmp / f"reports-plants-{name}-{n}"
            r = estimate(case, reports, caches, "--sampler", name)
            tree = xr.open_datatree(Path(r["report"]) / "posterior.nc", engine="netcdf4")
            ess = az.ess(tree["posterior"].to_dataset()[PROGRAMME_TOTALS], method="bulk")
            sampling = r["stages"]["fit stages"]["sampling (main fit)"]
            # ESS/s = ESS per gradient x gradients per second: how well the sampler moves
            # against what each log-density + gradient evaluation costs (all chains).
            steps = int(tree["sample_stats"]["n_steps"].sum())
            least = min(float(ess[v]) for v in PROGRAMME_TOTALS)
            out.append(
                {
                    "sampler": name,
                    "plants": n,
                    "model": tree.attrs.get("programme_model", "nested"),
                    "wall_s": r["wall_s"],
                    "compile_s": r["stages"]["fit stages"].get("compile", 0.0),
                    "sampling_s": sampling,
                    "gradients": steps,
                    "us_per_gradient": 1e6 * sampling / steps,
                    "ess_per_1k_gradients": 1e3 * least / steps,
                    "ess_per_s": least / sampling,
                    "divergences": int(tree["sample_stats"]["diverging"].sum()),
                    "peak_rss_gib": r["peak_rss_gib"],
                    "posterior_mb": r["posterior_mb"],
                }
            )
            print(f"  {name} {n} plants: {r['wall_s']:.0f} s", flush=True)
    pts = [p for p in out if p["sampler"] == "nutpie"]
    exponents = {}
    if len(pts) > 1:
        x = np.log([p["plants"] for p in pts])
        for figure in ("wall_s", "sampling_s", "peak_rss_gib", "posterior_mb"):
            exponents[f"{figure} vs plants"] = float(
                np.polyfit(x, np.log([p[figure] for p in pts]), 1)[0]
            )
    return {"points": out, "exponents": exponents}


def bench_many(counts: list[int], tmp: Path) -> dict:
    few = ["--draws", "300", "--tune", "300", "--chains", "2"]
    out = []
    for n in counts:
        cases = tmp / f"many-{n}"
        folders = [
            write_case(cases / f"synthetic-{i:02d}", months=24, rows=10, seed=i) for i in range(n)
        ]
        caches = tmp / f"caches-many-{n}"
        run(
            [*CAPEST, "estimate", str(folders[0]), "--reports-dir", str(tmp / "warmup"), *few],
            cache_env(caches),
        )
        together = run(
            [
                *CAPEST,
                "report",
                "--all",
                "--cases-dir",
                str(cases),
                "--reports-dir",
                str(tmp / f"many-reports-{n}"),
                *few,
            ],
            cache_env(caches),
        )["wall_s"]
        start = time.perf_counter()
        for case in folders:
            run(
                [*CAPEST, "estimate", str(case), "--reports-dir", str(tmp / f"one-{n}"), *few],
                cache_env(caches),
            )
        one_by_one = time.perf_counter() - start
        out.append({"cases": n, "report_all_s": together, "one_by_one_s": one_by_one})
        print(f"  {n} cases: report --all {together:.0f} s, one by one {one_by_one:.0f} s")
    return {"points": out}


def print_tables(results: dict) -> None:
    if "e2e" in results:
        t, floor_import = results["e2e_table"], results["e2e"]["import_s"]
        print("\nEnd to end: capest estimate, February 11 case, default settings (medians, s)")
        print(
            f"{'sampler':<8} {'cold':>7} {'warm':>7} {'sampling':>9} {'ESS/s':>8} "
            f"{'slowest':<20} {'div':>4} {'compiles':>8} {'RSS GiB':>8} {'nc MB':>6}"
        )
        for name, r in t.items():
            print(
                f"{name:<8} {r['cold_s']:7.1f} {r['warm_s']:7.1f} {r['sampling_s']:9.1f} "
                f"{r['ess_per_s']:8.0f} {r['slowest']:<20} {r['divergences']:4d} "
                f"{r['compiles']:8d} {r['peak_rss_gib']:8.2f} {r['posterior_mb']:6.1f}"
            )
        if "nutpie" in t:
            d = t["nutpie"]
            # The floor (issue #19): Python with the libraries imported + the default's main
            # fit's pure sampling, the least an estimate of the case could take.
            floor = floor_import + d["main_fit_sampling_s"]
            print(
                f"floor = import {floor_import:.1f} s + main fit sampling "
                f"{d['main_fit_sampling_s']:.1f} s = {floor:.1f} s"
            )
            print(f"default warm / floor = {d['warm_s'] / floor:.2f} (target <= 3)")
            if "added_s" in d:
                print(
                    f"default warm, one row added: {d['added_s']:.1f} s, "
                    f"{d['added_s'] / floor:.2f} x floor"
                )
            print(f"default cold / floor = {d['cold_s'] / floor:.2f}")
            if "pymc-c" in t:
                c = t["pymc-c"]
                print(
                    f"pymc-c / default: warm {c['warm_s'] / d['warm_s']:.2f}x (target >= 2), "
                    f"cold {c['cold_s'] / d['cold_s']:.2f}x (target >= 3), "
                    f"ESS/s {d['ess_per_s'] / c['ess_per_s']:.1f}x"
                )
            fit_stages = dict(d["warm_fit_stages"])
            said = fit_stages.pop(ESTIMATE_SAID, None)
            if said is not None:  # the provisional estimate's line, into the whole process
                before = d["warm_stages"]["import"] + d["warm_stages"]["load evidence and priors"]
                print(
                    f"default warm: the estimate said after {before + said:.1f} s "
                    f"({(before + said) / floor:.2f} x floor; the rest is scenarios, checks, "
                    "report)"
                )
            added = dict(d.get("added_fit_stages", {}))
            added.pop(ESTIMATE_SAID, None)
            added = {**d.get("added_stages", {}), **added}
            print("stages of the default warm run (s), and of the run after one added row:")
            for k, v in {**d["warm_stages"], **fit_stages}.items():
                print(f"  {k:<36} {v:8.2f} {added.get(k, float('nan')):8.2f}")
            for k in added.keys() - {**d["warm_stages"], **fit_stages}.keys():
                print(f"  {k:<36} {'':8} {added[k]:8.2f}")
            voi = {k: v for k, v in fit_stages.items() if k.startswith("what to measure next")}
            print(
                "value-of-information refits (simulation + compile + sampling): "
                f"{sum(v for k, v in voi.items() if '(count)' not in k):.2f} s"
            )
    if "scaling" in results:
        print("\nScaling (synthetic cases, one fit each, default draws)")
        print(
            f"{'axis':<7} {'size':>5} {'wall s':>7} {'sampling s':>10} {'us/grad':>8} "
            f"{'RSS GiB':>8} {'nc MB':>6}"
        )
        for p in results["scaling"]["points"]:
            print(
                f"{p['axis']:<7} {p['size']:>5} {p['wall_s']:7.1f} {p['sampling_s']:10.2f} "
                f"{p['us_per_gradient']:8.1f} {p['peak_rss_gib']:8.2f} "
                f"{p['posterior_mb']:6.1f}"
            )
        for k, v in results["scaling"]["exponents"].items():
            print(f"  growth exponent, {k}: {v:.2f}")
    if "plants" in results:
        print("\nPlants (synthetic programmes x 120 months, one fit each, default draws)")
        print(
            f"{'sampler':<8} {'plants':>6} {'model':>7} {'wall s':>7} {'compile s':>9} "
            f"{'sampling s':>10} {'us/grad':>8} {'ESS/1k grad':>11} {'ESS/s':>7} {'div':>4} "
            f"{'RSS GiB':>8} {'nc MB':>6}"
        )
        for p in results["plants"]["points"]:
            print(
                f"{p['sampler']:<8} {p['plants']:>6} {p.get('model', 'nested'):>7} "
                f"{p['wall_s']:7.1f} {p['compile_s']:9.1f} {p['sampling_s']:10.1f} "
                f"{p['us_per_gradient']:8.0f} {p['ess_per_1k_gradients']:11.1f} "
                f"{p['ess_per_s']:7.1f} {p['divergences']:4d} "
                f"{p['peak_rss_gib']:8.2f} {p['posterior_mb']:6.1f}"
            )
        for k, v in results["plants"]["exponents"].items():
            print(f"  growth exponent, {k}: {v:.2f}")
        largest = max(p["plants"] for p in results["plants"]["points"])
        at = {p["sampler"]: p for p in results["plants"]["points"] if p["plants"] == largest}
        if "nutpie" in at and "pymc-c" in at:
            fast, base = at["nutpie"], at["pymc-c"]
            print(
                f"  ESS/s at {largest} plants, nutpie / PyMC NUTS C: "
                f"{fast['ess_per_s'] / base['ess_per_s']:.1f}x (target >= 3x) = ESS per "
                f"gradient {fast['ess_per_1k_gradients'] / base['ess_per_1k_gradients']:.2f}x "
                f"x gradients per second {base['us_per_gradient'] / fast['us_per_gradient']:.2f}x"
            )
    if "many" in results:
        print("\nMany cases (2 chains x 300 draws each)")
        for p in results["many"]["points"]:
            print(
                f"  {p['cases']:>2} cases: report --all {p['report_all_s']:6.1f} s, one by one "
                f"{p['one_by_one_s']:6.1f} s ({p['one_by_one_s'] / p['report_all_s']:.2f}x)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="e2e,scaling,plants,many", help="sections, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of the default's runs")
    parser.add_argument(
        "--baseline-repeats",
        type=int,
        default=1,
        help="repetitions of the other samplers' runs (each takes 5-10 minutes)",
    )
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--cases", default="1,4,16", help="case counts for the many section")
    parser.add_argument("--plants", default="1,5,10,50", help="plant counts, plants section")
    parser.add_argument(
        "--plant-samplers", default="nutpie,pymc-c", help="samplers of the plants section"
    )
    args = parser.parse_args()
    sections = args.only.split(",")
    samplers = args.samplers.split(",")
    results: dict = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tempfile.TemporaryDirectory(prefix="capest-bench-") as tmp:
        tmp = Path(tmp)
        # Each section's figures are written as soon as it ends: a run stopped in a later
        # section keeps them.
        if "e2e" in sections:
            print("end to end ...", flush=True)
            results["e2e"] = bench_e2e(args.repeats, args.baseline_repeats, samplers, tmp)
            results["e2e_table"] = summarise_e2e(results["e2e"], samplers)
            save(results)
        if "scaling" in sections:
            print("scaling ...", flush=True)
            results["scaling"] = bench_scaling(tmp)
            save(results)
        if "plants" in sections:
            print("plants ...", flush=True)
            counts = [int(n) for n in args.plants.split(",")]
            results["plants"] = bench_plants(counts, args.plant_samplers.split(","), tmp)
            save(results)
        if "many" in sections:
            print("many cases ...", flush=True)
            results["many"] = bench_many([int(n) for n in args.cases.split(",")], tmp)
            save(results)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save(results)
    print_tables(results)
    return 0


def save(results: dict) -> None:
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
