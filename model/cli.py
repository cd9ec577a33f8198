"""Command line: a thin layer over model/pipeline.py (load, fit, summarise, report).

Exit codes (README, "Exit codes"): 0 the report is written and its checks passed; 1 the report
is written but a check failed (it says which at its top); 2 bad input, or refused (another run
holds the lock): nothing written; 3 an internal error or an OS error such as a full disk: the
log says which (with the traceback of an internal error), nothing written.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time

from model import default_pytensor_flag
from model.evidence import COLUMNS, OPTIONAL

log = logging.getLogger("capest")


def _bounded(low: int, high: int):
    """An argparse type: a whole number in [low, high], or argparse's own error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    return parse


def _date(text: str) -> str:
    from model.timeline import parse_date

    try:
        parse_date(text, end=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# Bounds of the sampler settings (README, "Exit codes"): beyond them a run is a typo, or
# one the machine cannot hold; nutpie and PyMC take seeds below 2**32.
DRAWS, TUNE, CHAINS, SEED = (
    _bounded(1, 100_000),
    _bounded(0, 100_000),
    _bounded(1, 64),
    _bounded(0, 2**32 - 1),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="capest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    est = commands.add_parser("estimate", help="estimate a case and write its report")
    est.add_argument(
        "case", help="case folder (holding case.toml), e.g. data/cases/february-11-plant"
    )
    est.add_argument(
        "--reports-dir", default="reports", help="where report folders go (default: reports)"
    )
    est.add_argument(
        "--draws", type=DRAWS, default=1000, help="posterior draws per chain (default 1000)"
    )
    est.add_argument(
        "--tune", type=TUNE, default=1000, help="warm-up draws per chain (default 1000)"
    )
    est.add_argument("--chains", type=CHAINS, default=4, help="chains (default 4)")
    est.add_argument(
        "--seed", type=SEED, default=None, help="random seed (default: fixed, see fit.py)"
    )
    est.add_argument(
        "--sampler",
        choices=["nutpie", "pymc", "pymc-c"],
        default="nutpie",
        help="NUTS implementation: nutpie (default), pymc (PyMC's own, numba backend) or "
        "pymc-c (PyMC's own on the C backend, as in PyMC 5)",
    )
    est.add_argument(
        "--as-of",
        type=_date,
        default=None,
        metavar="DATE",
        help="use only evidence reported by DATE (YYYY-MM-DD)",
    )
    est.add_argument(
        "--timings",
        default=None,
        metavar="FILE",
        help="write seconds per stage (import, fit stages, checks, report) as JSON to FILE",
    )
    est.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler, e.g. tcp://host:8786, for the refits (scenarios, left-out rows "
        "and sources) that reweighting cannot replace, or a programme's fit (default: "
        "$CAPEST_SCHEDULER, else this process)",
    )
    est.add_argument(
        "--no-conditional",
        action="store_true",
        help="skip the per-reading fits (faster; the report then omits them)",
    )
    est.add_argument(
        "--fresh",
        action="store_true",
        help="sample every refit; by default a target the latest run refitted is that "
        "refit's draws reweighted to this ledger when the weights meet the fit rules",
    )
    add = commands.add_parser(
        "add-evidence", help="validate and append one row to a case's evidence ledger"
    )
    add.add_argument("case", help="case folder (holding case.toml)")
    for column in COLUMNS + OPTIONAL:
        add.add_argument(f"--{column.replace('_', '-')}", dest=column, default="", metavar="TEXT")
    foot = commands.add_parser(
        "footprints",
        help="derive area and workforce rows from a case's building footprints into its ledger",
    )
    foot.add_argument("case", help="case folder (holding case.toml with a [footprints] table)")
    foot.add_argument(
        "--weight",
        type=float,
        default=1.0,
        help="weight of the footprints' readings against the case's other readings; each "
        "reading gets it times the analyst's probability of its roles (default 1)",
    )
    foot.add_argument("--dry-run", action="store_true", help="print the rows, write nothing")
    rep = commands.add_parser(
        "report", help="estimate every case, each as a job on a local or remote Dask cluster"
    )
    rep.add_argument("--all", action="store_true", required=True, help="every case in --cases-dir")
    rep.add_argument("--cases-dir", default="data/cases", help="default: data/cases")
    rep.add_argument("--reports-dir", default="reports", help="default: reports")
    rep.add_argument(
        "--jobs",
        type=_bounded(1, 256),
        default=os.cpu_count() or 1,
        help="cases estimated at once on the local cluster (default: the number of cores)",
    )
    rep.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="an existing Dask scheduler, e.g. tcp://host:8786 (default: $CAPEST_SCHEDULER, "
        "else a local cluster)",
    )
    for flag, kind in (
        ("--draws", DRAWS),
        ("--tune", TUNE),
        ("--chains", CHAINS),
        ("--seed", SEED),
    ):
        rep.add_argument(flag, type=kind, default=None, help="passed to each estimate")
    val = commands.add_parser(
        "validate",
        help="check a case's inputs as estimate does, without sampling (exit 0 valid, 2 not)",
    )
    val.add_argument("case", help="case folder (holding case.toml)")
    val.add_argument(
        "--as-of",
        type=_date,
        default=None,
        metavar="DATE",
        help="check only the evidence reported by DATE (YYYY-MM-DD), as estimate --as-of would",
    )
    hist = commands.add_parser("history", help="headline quantities of each past run of a case")
    hist.add_argument("case", help="case folder or case id")
    hist.add_argument("--reports-dir", default="reports", help="where report folders are")
    nxt = commands.add_parser(
        "next", help="what to measure next: the latest saved run's ranking (no sampling)"
    )
    nxt.add_argument("case", help="case folder or case id")
    nxt.add_argument("--reports-dir", default="reports", help="where report folders are")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    for noisy in ("pytensor", "pymc", "arviz", "numba", "matplotlib", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run = {
        "history": history,
        "add-evidence": add_evidence,
        "footprints": footprints,
        "estimate": estimate,
        "report": report_all,
        "validate": validate,
        "next": what_next,
    }
    from model.errors import Busy, InputError

    try:
        return run[args.command](args)
    except (InputError, Busy) as exc:  # found late (e.g. a scenario's prior): still refused
        log.error("%s", exc)
        return 2
    except OSError as exc:  # disk full, permissions: the OS's words, no traceback needed
        log.error(
            "capest %s %s: %s (nothing was written)", args.command, getattr(args, "case", ""), exc
        )
        return 3
    except Exception:  # a bug, not the input: the traceback goes to the log for the report
        log.exception(
            "internal error in capest %s %s (nothing was written)",
            args.command,
            getattr(args, "case", ""),
        )
        return 3


def report_all(args: argparse.Namespace) -> int:
    from model.runs import run_all

    extra = [
        f"--{k}={v}"
        for k in ("draws", "tune", "chains", "seed")
        if (v := getattr(args, k)) is not None
    ]
    return run_all(args.cases_dir, args.reports_dir, args.jobs, extra, args.scheduler)


def add_evidence(args: argparse.Namespace) -> int:
    """Append one row after validating the whole ledger with it, on its own and against
    case.toml (units, window, readings, stages); refuse duplicates."""
    import signal

    from model import InputError, load_case
    from model.errors import Busy
    from model.evidence import append_row

    # SIGTERM (a timeout, a stopped service) unwinds like Ctrl-C, so append_row's cleanup
    # removes its candidate file; only SIGKILL leaves one, and the next append removes it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        case = load_case(args.case)
        row = {c: getattr(args, c) for c in COLUMNS + OPTIONAL}
        ledger = append_row(
            case.input_files[1],
            row,
            check=lambda candidate: load_case(args.case, evidence=candidate),
        )
    except (InputError, Busy) as exc:
        log.error("%s", exc)
        return 2
    print(f"added {args.id} to {ledger}")
    return 0


def footprints(args: argparse.Namespace) -> int:
    """Derive the footprints' rows and append them as add-evidence does (exit 0 written,
    2 refused: nothing written)."""
    import math

    from model.footprints import write

    if not (math.isfinite(args.weight) and args.weight > 0):
        log.error("capest footprints: --weight must be a number > 0, got %s", args.weight)
        return 2
    rows = write(args.case, weight=args.weight, dry_run=args.dry_run)
    for row in rows:
        print(f"{'would add' if args.dry_run else 'added'} {row['id']}: {row['quote']}")
    return 0


def validate(args: argparse.Namespace) -> int:
    """Every input check of `estimate`, nothing sampled: exit 0 valid, 2 invalid (the same
    InputError message as estimate, through main's handler)."""
    from model.validate import validate as check

    result = check(args.case, as_of=args.as_of)
    what = f"{result.plants} plants, " if result.kind == "programme" else ""
    print(f"{args.case}: valid ({result.kind} {result.case_id}, {what}{result.evidence_rows} rows)")
    return 0


def history(args: argparse.Namespace) -> int:
    """Print one line per past run: when, inputs, headline medians, checks."""
    from pathlib import Path

    from model.compare import history as past_runs

    case_id = Path(args.case).name
    runs = past_runs(args.reports_dir, case_id)
    if not runs:
        log.error("no runs of %s under %s", case_id, args.reports_dir)
        return 2
    print(
        f"{'run':<22} {'evidence by':<11} {'inputs':<8} {'rate_before':>11} "
        f"{'rate_after':>10} {'P(x2)':>6}  status"
    )
    for r in runs:
        q = r["quantities"]
        print(
            f"{r['run']:<22} {r['evidence_as_of']:<11} {r['input_hash'][:8]:<8} "
            f"{q['rate_before']['median']:>11.3g} {q['rate_after']['median']:>10.3g} "
            f"{q['p_capacity_doubled']['median']:>6.0%}  "
            f"{'passed' if r['passed'] else 'FAILED'}"
        )
    return 0


def what_next(args: argparse.Namespace) -> int:
    """Print the latest run's "What to measure next" ranking from its summary.json."""
    import json
    from pathlib import Path

    from model.voi import print_ranking

    case_id = Path(args.case).name
    path = Path(args.reports_dir) / case_id / "latest" / "summary.json"
    if not path.is_file():
        log.error(
            "no saved run of %s under %s: run capest estimate first", case_id, args.reports_dir
        )
        return 2
    summary = json.loads(path.read_text(encoding="utf-8"))
    if "what_to_measure_next" not in summary:
        log.error("%s predates 'what to measure next': run capest estimate again", path)
        return 2
    print(print_ranking(summary))
    return 0


def estimate(args: argparse.Namespace) -> int:
    """model/pipeline.py's run_estimate with the command's options; refused input exits 2."""
    from model.timing import Stopwatch

    watch = Stopwatch("estimate")
    from model.errors import Busy, InputError
    from model.pipeline import run_estimate
    from model.sampler import SamplerSettings
    from model.summary import headline

    start = time.perf_counter()
    watch.mark("import")
    settings = SamplerSettings(
        draws=args.draws, tune=args.tune, chains=args.chains, sampler=args.sampler
    )
    if args.seed is not None:
        settings = SamplerSettings(**{**settings.__dict__, "seed": args.seed})
    try:
        result = run_estimate(
            args.case,
            settings,
            args.reports_dir,
            as_of=args.as_of,
            conditional=not args.no_conditional,
            watch=watch,
            scheduler=args.scheduler,
            fresh=args.fresh,
        )
    except (Busy, InputError) as exc:
        log.error("%s", exc)
        return 2
    summary, folder, idata = result.summary, result.folder, result.idata
    if args.timings:
        import json

        from model import strict_json

        stages = {**watch.seconds, "fit stages": json.loads(idata.attrs["timings"])}
        with open(args.timings, "w") as f:
            f.write(strict_json.dumps(stages, indent=2))
    log.info("%s", headline(summary["quantities"]))
    log.info("report written to %s (%.0f s)", folder, time.perf_counter() - start)
    for check in summary["checks"]:
        if check["status"] != "pass":
            level = logging.ERROR if check["status"] == "fail" else logging.WARNING
            log.log(level, "%s %s: %s", check["name"], check["status"].upper(), check["finding"])
    if result.exit_code == 0:
        print(folder)
    return result.exit_code


def tune_process() -> None:
    """CPython's cyclic collector and PyTensor's graph traces set for one short run of this
    process (not for a notebook's or a Dask worker's, which live on: they call main() and keep
    the defaults).

    A warm estimate holds about 500,000 Python objects (PyTensor graphs, numba, xarray); at the
    default threshold of 700 allocations the collector walked all of them in full 12 times,
    2.5-3 s of a 23 s February 11 run. At 10,000 it runs 14x less often, for 0.9 s, and the
    peak RSS is the same (652 and 654 MB; benchmarks/README.md, "The collector").

    PyTensor records where each of its graph's nodes was made (eight frames of the Python
    stack, for its error messages): 15,000 nodes and 0.3 s of a warm estimate. Debugging a
    model's graph is a notebook's job (run_estimate keeps them); a command's errors are
    capest's own. A limit the caller set stands."""
    gc.set_threshold(10_000, 10, 10)
    default_pytensor_flag("traceback__limit", 0)


def entry() -> None:
    """The `capest` command and `python -m model.cli`: main() in a process of its own."""
    tune_process()
    code = main()
    # The process ends here and its memory goes back whole: frozen objects spare interpreter
    # shutdown its full collections over all of them (1.3 s). atexit handlers still run.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
