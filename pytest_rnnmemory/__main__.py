"""Command line: ``python -m pytest_rnnmemory calibrate`` and ``python -m pytest_rnnmemory report``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_rnnmemory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    calibrate = commands.add_parser(
        "calibrate", help="error rates and power of the verdict and the gate, per trial count"
    )
    calibrate.add_argument("--trials", default="10,20,30,50", help="trial counts (comma-separated)")
    calibrate.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo")
    render = commands.add_parser(
        "report", help="render the markdown report and plot again from a JSON report"
    )
    render.add_argument("json", help="a reports/<suite>.json written by a run")
    render.add_argument("--out", help="folder for the files (default: the JSON's folder)")
    args = parser.parse_args(argv)
    if args.command == "report":
        import json
        from pathlib import Path

        from .report import run_from_json, write_reports

        source = Path(args.json)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            parser.error(f"{source}: cannot read the JSON report: {exc}")
        if data.get("schema_version") != 1:
            parser.error(f"{source}: not a version-1 JSON report of pytest-rnnmemory")
        out = Path(args.out) if args.out else source.parent
        for path in write_reports(run_from_json(data), out, data.get("environment", {})):
            print(f"written: {path}")
        return 0
    if args.command == "calibrate":
        from .calibration import format_table, power_table

        try:
            trials = tuple(int(v) for v in args.trials.split(","))
        except ValueError:
            parser.error(f"--trials={args.trials}: must be integers, comma-separated")
        print(format_table(power_table(trials, args.test)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
