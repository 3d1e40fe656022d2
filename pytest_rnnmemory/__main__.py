"""Command line of pytest-rnnmemory: ``python -m pytest_rnnmemory {report,compare,replay,calibrate} ...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import SuiteRun


#: The largest trial count ``calibrate`` tables: its exact sums over pairs of counts grow fast
#: (2 min 16 s for 100 alone on a 2-core machine; 500 ran past 10 minutes).
MAX_CALIBRATED = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_rnnmemory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    calibrate = commands.add_parser(
        "calibrate", help="error rates and power of the verdict and the gate, per trial count"
    )
    calibrate.add_argument(
        "--trials", help=f"trial counts (comma-separated, each at most {MAX_CALIBRATED}; default 10,20,30,50)"
    )
    calibrate.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo")
    instead = calibrate.add_mutually_exclusive_group()
    instead.add_argument(
        "--search",
        action="store_true",
        help="instead: how often a recipe search's verdict says learns for a cell at p0 (by simulation)",
    )
    instead.add_argument(
        "--looks",
        action="store_true",
        help="instead: the error rates of counts looked at twice (an inconclusive case again, staged runs)",
    )
    render = commands.add_parser(
        "report",
        help="render the markdown report and figures again from a JSON report",
        description="Render a JSON report again, without training. The files are named after the "
        "JSON file, never after its suite: X.json gives X.md, X.png, X-curves.png, X-gradients.png "
        "(X-search.png, X-sequences.png where the report has them) and X.json itself, written again, "
        "so that rendering a renamed copy never writes over another report.",
    )
    render.add_argument("json", help="a JSON report, X.json: reports/<suite>.json or a copy of one")
    render.add_argument(
        "--out",
        help="folder for the files X.md, X.json, ... (default: the JSON's folder); one whose X.json holds "
        "another report is refused",
    )
    compare = commands.add_parser(
        "compare", help="two JSON reports side by side: configuration, frontiers, counts"
    )
    compare.add_argument("first", help="a JSON report (A)")
    compare.add_argument("second", help="a JSON report (B)")
    compare.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo")
    compare.add_argument("--out", help="write the markdown here instead of printing it")
    replay = commands.add_parser(
        "replay", help="train one trial of a reported case again, alone, and compare"
    )
    replay.add_argument("json", help="a reports/<suite>.json written by a run")
    replay.add_argument("--cell", required=True)
    replay.add_argument("--length", type=int, required=True)
    replay.add_argument("--trial", type=int, required=True, help="the trial's index in the case (0-based)")
    replay.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.command == "replay":
        from .errors import RnnMemoryError
        from .replay import describe, replay_trial
        from .usercode import UserCodeError

        run, _ = _read_report(args.json, parser)
        _check_device(args.device, parser)
        try:
            result = replay_trial(run, args.cell, args.length, args.trial, args.device)
        except UserCodeError as exc:  # the user's code raised as the trial trained: no usage error
            print(exc.describe(f"{run.name} {args.cell}-L{args.length}, trial {args.trial}"), file=sys.stderr)
            return 1
        except RnnMemoryError as exc:  # what the report names may not load here (a task, a cell)
            parser.error(f"{args.json}: {exc}")
        print(f"{run.name}: {args.cell} at length {args.length}, trial {args.trial}")
        print(describe(result))
        return 0 if result.matches() else 1
    if args.command == "compare":
        from .compare import compare_reports

        (first, _), (second, _) = _read_report(args.first, parser), _read_report(args.second, parser)
        text = compare_reports(first, second, (args.first, args.second), args.test)
        if args.out:
            out = Path(args.out)
            _check_comparison_out(out, (Path(args.first), Path(args.second)), parser)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text, encoding="utf-8")
            except OSError as exc:
                parser.error(f"--out {args.out}: cannot write the comparison there ({exc.strerror or exc})")
            print(f"written: {args.out}")
        else:
            print(text)
        return 0
    if args.command == "report":
        return _render(args.json, args.out, parser)
    if args.command == "calibrate" and (args.search or args.looks) and args.trials is not None:
        parser.error(
            f"--trials applies to the power table; --{'search' if args.search else 'looks'} has its own"
        )
    if args.command == "calibrate" and args.search:
        from .calibration import format_search_table, search_error_rates

        print(format_search_table(search_error_rates(_calibration_case(), runs=20000)))
        return 0
    if args.command == "calibrate" and args.looks:
        from .calibration import format_second_looks, second_looks

        print(format_second_looks(second_looks(test=args.test)))
        return 0
    if args.command == "calibrate":
        from .calibration import format_table, power_table

        given = args.trials if args.trials is not None else "10,20,30,50"
        try:
            trials = tuple(int(v) for v in given.split(","))
        except ValueError:
            trials = ()
        if not trials or not 1 <= min(trials) <= max(trials) <= MAX_CALIBRATED:
            parser.error(
                f"--trials={given}: must be integers in [1, {MAX_CALIBRATED}], comma-separated (e.g. 10,30)"
            )
        repeated = sorted({n for n in trials if trials.count(n) > 1})
        if repeated:  # each would be computed and tabled again, the slowest (100) taking minutes
            parser.error(
                f"--trials={given}: {', '.join(map(str, repeated))} given more than once; each count once"
            )
        print(format_table(power_table(trials, args.test)))
    return 0


def _render(source: str, folder: str | None, parser: argparse.ArgumentParser) -> int:
    """Write the report that the JSON report ``source`` holds again, in ``folder`` (default:
    beside it), named after ``source``; a usage error names a file it could not write."""
    import warnings

    from .errors import ReportWriteError
    from .report import write_reports

    path = Path(source)
    if path.suffix != ".json":
        parser.error(f"{source}: the files are named after the report's, which must end in .json")
    run, environment = _read_report(source, parser)
    out = Path(folder) if folder else path.parent
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out}: is a file; give the folder to write the report in")
    target = out / path.name
    if target.exists() and not target.samefile(path) and not _same_report(target, path, run, environment):
        parser.error(
            f"--out {out}: {target} holds another report than {source}, which rendering {source} there "
            "would write over; give another folder, or copy the report under another name first"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning of this rendering, whatever was shown before
        try:
            written = write_reports(run, out, environment, name=path.stem)
        except ReportWriteError as exc:
            written, unwritten = exc.written, exc.unwritten
        else:
            unwritten = []
    for p in written:
        print(f"written: {p}")
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if unwritten:
        parser.error("; ".join(f"{p}: cannot write it ({why})" for p, why in unwritten))
    return 0


def _same_report(target: Path, source: Path, run: SuiteRun, environment: dict[str, str]) -> bool:
    """Whether ``target`` holds the report that ``source`` holds: as read, or as it is written again."""
    import json

    from .report import to_json

    try:
        held = json.loads(target.read_text(encoding="utf-8"))
        read = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return held in (read, json.loads(json.dumps(to_json(run, environment))))


def _check_comparison_out(out: Path, reports: tuple[Path, Path], parser: argparse.ArgumentParser) -> None:
    """A usage error where ``--out`` would write the markdown comparison over a report: one of the two
    compared, or any ``.json`` file (the name reports and baselines have)."""
    for report in reports:
        if out.exists() and report.exists() and out.samefile(report):
            parser.error(
                f"--out {out}: is {report}, a report compared; give a markdown file (e.g. compare.md)"
            )
    if ".json" in (out.suffix, out.resolve().suffix):  # a link named .md to a report is one
        parser.error(
            f"--out {out}: the comparison is markdown, and a .json file is where reports and baselines "
            "are kept; give a file ending in .md (e.g. compare.md)"
        )


def _calibration_case():
    """A case of a suite with a recipe search, 30 verdict trials: whose seeds the simulation uses."""
    import tempfile

    from .suite import load_suite

    text = (
        '[suite]\ntask = "latching"\ncells = ["lstm"]\nlengths = [20]\n[search]\n"train.lr" = [0.01, 0.1]\n'
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calibration.toml"
        path.write_text(text, encoding="utf-8")
        return load_suite(path).cases()[0]


def _check_device(device: str, parser: argparse.ArgumentParser) -> None:
    """A ``--device`` that is here, or a usage error that says what is."""
    from .runtime import NO_CUDA, cuda_problem
    from .schema import is_device_name

    if device == "cpu":
        return
    if not is_device_name(device):
        parser.error(f"--device {device}: must be cpu, cuda or cuda:N")
    problem = cuda_problem(device)
    if problem is not None:
        parser.error(f"--device {device}: {problem}" + ("; use --device cpu" if problem == NO_CUDA else ""))


def _read_report(path: str, parser: argparse.ArgumentParser) -> tuple[SuiteRun, dict[str, str]]:
    """The run a JSON report holds, and its environment; a usage error names what is wrong."""
    from .errors import StoredDataError
    from .report import read_report

    # a pipe is read as a file is (compare <(git show HEAD~1:reports/X.json) reports/X.json)
    if Path(path).is_dir():
        parser.error(f"{path}: is a folder, not a JSON report")
    if not Path(path).exists():
        parser.error(f"{path}: no such file: a JSON report")
    try:
        return read_report(Path(path))
    except StoredDataError as exc:
        parser.error(f"{path}: not a JSON report this version of pytest-rnnmemory can read: {exc}")


def run(argv: list[str] | None = None) -> int:
    """:func:`main`, ending quietly where its reader stops reading (``compare a.json b.json | head``)."""
    try:
        return main(argv)
    except BrokenPipeError:
        # Python flushes stdout again at exit, which would raise once more: point it at nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(run())
