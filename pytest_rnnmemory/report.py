"""The capability report: a suite's verdicts as markdown, JSON, a plot and a terminal table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .results import Record, SuiteRun

#: Version of the JSON report's layout; bumped when a key changes meaning or goes away.
SCHEMA_VERSION = 1

MARKS = {"learns": "✓", "fails": "✗", "inconclusive": "?"}
MISSING = "—"


def cell_text(record: Record | None, *, interval: bool = True) -> str:
    """One table cell: verdict mark, k/n and (optionally) the 95% interval."""
    if record is None:
        return f"{MISSING} missing"
    if "reason" in record:  # a verdict that --rnn-frontier implied instead of training
        return f"({MARKS[record['verdict']]}) implied"
    text = f"{MARKS[record['verdict']]} {record['k']}/{record['n']}"
    if interval:
        text += f" [{record['ci_low']:.2f}, {record['ci_high']:.2f}]"
    return text


def capability_rows(run: SuiteRun, *, interval: bool = True) -> list[list[str]]:
    """Rows of lengths, columns of cells; a selected case that did not run shows as missing."""
    rows = []
    for length in run.lengths:
        row = [str(length)]
        for cell in run.cells:
            if (cell, length) not in run.expected:
                row.append("")
            else:
                record = run.records.get((cell, length)) or run.implied.get((cell, length))
                row.append(cell_text(record, interval=interval))
        rows.append(row)
    return rows


def terminal_table(run: SuiteRun) -> str:
    """The compact table for pytest's terminal summary."""
    table = tabulate(capability_rows(run, interval=False), headers=["length", *run.cells])
    cells = [c for c in run.cells if c not in run.controls]
    frontiers = ", ".join(f"{c} {_frontier_text(run.frontier(c))}" for c in cells)
    lines = [table, f"frontier (largest length learned): {frontiers}"]
    lines += [_leak_text(control, lengths) for control, lengths in run.leaky_controls().items()]
    return "\n".join(lines)


def _leak_text(control: str, lengths: list[int]) -> str:
    where = ", ".join(map(str, lengths))
    return (
        f"WARNING: the {control} control learns at length {where}: the success criterion is "
        "reachable without memory there, so a cell's success says nothing about its memory"
    )


def _frontier_text(value: int | None) -> str:
    return "none" if value is None else str(value)


def markdown(run: SuiteRun, environment: dict[str, str], plot_name: str | None) -> str:
    """The markdown report of one suite."""
    verdict = run.config["verdict"]
    success = run.config["success"]
    chance = _chance_text(run)
    lines = [f"# {run.name}: capability report", ""]
    for control, lengths in run.leaky_controls().items():
        lines += [f'> <span style="color:red">**{_leak_text(control, lengths)}**</span>', ""]
    for cell, before, now in run.frontier_drops():
        now_text = "no length" if now is None else f"up to length {now}"
        lines += [
            f"> **Frontier moved down: {cell}** learned up to length {before} in the baseline, "
            f"now {now_text}.",
            "",
        ]
    lines += [
        run.description or f"Task `{run.task}`.",
        "",
        f"A case is one (cell, length). Each trains **{verdict['trials']} independent trials**; a trial "
        f"succeeds when its validation {success['metric']} reaches **{success['threshold']}** "
        f"(chance: {chance}). The verdict is `learns` when the success rate is significantly above "
        f"p0 = {verdict['p0']} (one-sided exact binomial test, alpha = {verdict['alpha']}), `fails` when "
        "significantly below, and `inconclusive` otherwise.",
        "",
        "## Capability",
        "",
        "✓ learns, ✗ fails, ? inconclusive, — missing; k/n successes and the exact 95% interval of the rate.",
        "",
        tabulate(capability_rows(run), headers=["length", *run.cells], tablefmt="github"),
        "",
        "## Frontier",
        "",
        "The largest length each cell learns in this run.",
        "",
        tabulate(
            [[c, _frontier_text(run.frontier(c))] for c in run.cells if c not in run.controls],
            headers=["cell", "frontier"],
            tablefmt="github",
        ),
        "",
    ]
    if plot_name:
        lines += [f"![success rate against length]({plot_name})", ""]
    lines += ["## Cases", "", _case_table(run), ""]
    if run.baseline is not None:
        lines += _baseline_section(run)
    if run.implied:
        lines += [
            "## Not trained: implied by the frontier search",
            "",
            "`--rnn-frontier` assumes that success falls with length and skipped these lengths:",
            "",
            *[
                f"- {c}-L{n}: {r['verdict']}, because {r['reason']}"
                for (c, n), r in sorted(run.implied.items())
            ],
            "",
        ]
    if run.missing:
        lines += [
            "## Missing",
            "",
            "Selected but without a result (interrupted, errored or deselected while running):",
            "",
            *[f"- {c}-L{n}" for c, n in run.missing],
            "",
        ]
    lines += [
        "## Configuration",
        "",
        f"- suite file: `{run.path}`" + (f", profile `{run.profile}`" if run.profile else ""),
        f"- seed: {run.config['suite']['seed']}",
        f"- wall time of the cases: {run.wall_s:.1f} s",
        *[f"- {k}: {v}" for k, v in environment.items()],
        "",
        "```toml",
        _toml(run.config),
        "```",
        "",
    ]
    return "\n".join(lines)


def _baseline_section(run: SuiteRun) -> list[str]:
    baseline = run.baseline
    rows = [
        [
            c.cell,
            c.length,
            c.status,
            f"{c.k}/{c.n}",
            "" if c.k_base is None else f"{c.k_base}/{c.n_base}",
            "" if c.p_drop is None else f"{c.p_drop:.3g}",
            "" if c.p_adjusted is None else f"{c.p_adjusted:.3g}",
            "" if c.p_rise is None else f"{c.p_rise:.3g}",
        ]
        for c in run.comparisons
    ]
    frontier = [
        [cell, _frontier_text(baseline.frontier(run.name, cell)), _frontier_text(run.frontier(cell))]
        for cell in run.cells
    ]
    return [
        "## Against the baseline",
        "",
        f"Baseline `{baseline.path.name}` of {baseline.created}. A case regressed when its success rate "
        f"is significantly lower (one-sided {run.config['verdict']['regression_test']} test, Holm-adjusted "
        f"across this suite's cases, alpha = {run.config['verdict']['alpha']}); a significant rise is "
        "reported, never failed; a case whose configuration changed is not comparable.",
        "",
        tabulate(
            rows,
            headers=["cell", "length", "status", "now", "baseline", "p (drop)", "Holm", "p (rise)"],
            tablefmt="github",
        ),
        "",
        tabulate(frontier, headers=["cell", "frontier then", "frontier now"], tablefmt="github"),
        "",
    ]


def _chance_text(run: SuiteRun) -> str:
    """The task's chance level: one value, or one per length where it depends on length."""
    by_length = {n: r["chance"] for (_, n), r in sorted(run.records.items())}
    if not by_length:
        return "n/a"
    if len(set(by_length.values())) == 1:
        return f"{next(iter(by_length.values())):.3g}"
    return ", ".join(f"{value:.3g} at L={n}" for n, value in by_length.items())


def _case_table(run: SuiteRun) -> str:
    rows = []
    for cell, length in run.ordered_cases:
        r = run.records.get((cell, length))
        if r is None:
            rows.append([cell, length, MISSING, "", "", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                cell,
                length,
                r["verdict"]
                + (
                    f" (settled after {r['n']} of {r['trials_planned']} trials)"
                    if r.get("trials_planned", r["n"]) > r["n"]
                    else ""
                ),
                f"{r['k']}/{r['n']}",
                f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
                f"{r['p_greater']:.3g}",
                f"{r['p_less']:.3g}",
                f"{r['metric_median']:.3f}",
                f"{r['metric_mean']:.3f} / {r['metric_max']:.3f}",
                r["diverged"],
                f"{r['wall_s']:.1f}",
            ]
        )
    headers = [
        "cell",
        "length",
        "verdict",
        "k/n",
        "95% CI",
        "p (>p0)",
        "p (<p0)",
        "median metric",
        "mean / max metric",
        "diverged",
        "time (s)",
    ]
    return tabulate(rows, headers=headers, tablefmt="github")


def _toml(config: dict[str, Any]) -> str:
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        for k, v in values.items():
            out.append(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}")
        out.append("")
    return "\n".join(out).rstrip()


def to_json(run: SuiteRun, environment: dict[str, str]) -> dict[str, Any]:
    """The JSON report of one suite: everything, every trial's final metric included."""
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": run.name,
        "description": run.description,
        "path": run.path,
        "task": run.task,
        "profile": run.profile,
        "config": run.config,
        "environment": environment,
        "wall_s": round(run.wall_s, 3),
        "frontier": {c: run.frontier(c) for c in run.cells if c not in run.controls},
        "leaky_controls": run.leaky_controls(),
        "cases": [
            {k: v for k, v in run.records[c].items() if k != "suite_meta"}
            for c in run.ordered_cases
            if c in run.records
        ],
        "missing": [{"cell": c, "length": n} for c, n in run.missing],
        "implied": [
            {k: v for k, v in r.items() if k != "suite_meta"} for _, r in sorted(run.implied.items())
        ],
    }


def plot(run: SuiteRun, path: Path) -> bool:
    """Success rate against length per cell, with 95% intervals; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for cell in run.cells:
        points = sorted((n, r) for (c, n), r in run.records.items() if c == cell)
        if not points:
            continue
        xs = [n for n, _ in points]
        rates = [r["rate"] for _, r in points]
        low = [r["rate"] - r["ci_low"] for _, r in points]
        high = [r["ci_high"] - r["rate"] for _, r in points]
        if cell in run.controls:
            style = {"linestyle": ":", "marker": "x", "label": f"{cell} (control)"}
        else:
            style = {"marker": "o", "label": cell}
        ax.errorbar(xs, rates, yerr=[low, high], capsize=3, **style)
    p0 = run.config["verdict"]["p0"]
    ax.axhline(p0, color="grey", linestyle="--", linewidth=1, label=f"p0 = {p0}")
    lengths = run.lengths
    if lengths and max(lengths) / max(min(lengths), 1) >= 10:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(_spread(lengths))
    ax.set_xlabel("length")
    ax.set_ylabel("success rate (k/n)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{run.name}: success rate against length (95% intervals)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _spread(lengths: list[int]) -> list[int]:
    """Tick positions from ``lengths`` that stay readable: on a log axis, at least 1.4x apart."""
    ticks: list[int] = []
    for length in sorted(lengths):
        if not ticks or length / ticks[-1] >= 1.4 or len(lengths) <= 8:
            ticks.append(length)
    return ticks


def run_from_json(data: dict[str, Any]) -> SuiteRun:
    """A :class:`SuiteRun` rebuilt from a JSON report, to render it again without training."""
    records = {(c["cell"], c["length"]): c for c in data["cases"]}
    missing = [(m["cell"], m["length"]) for m in data.get("missing", [])]
    run = SuiteRun(
        name=data["suite"],
        description=data.get("description", ""),
        path=data.get("path", ""),
        task=data["task"],
        profile=data.get("profile"),
        config=data["config"],
        expected=[*records, *missing],
        records=records,
        wall_s=data.get("wall_s", 0.0),
        implied={(r["cell"], r["length"]): r for r in data.get("implied", [])},
    )
    run.expected += list(run.implied)
    return run


def write_reports(run: SuiteRun, report_dir: Path, environment: dict[str, str]) -> list[Path]:
    """Write ``<suite>.md``, ``<suite>.json`` and, with matplotlib, ``<suite>.png``; return the paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written = []
    png = report_dir / f"{run.name}.png"
    has_plot = bool(run.records) and plot(run, png)
    if has_plot:
        written.append(png)
    elif png.exists():
        png.unlink()  # an earlier run's plot would contradict this report
    md = report_dir / f"{run.name}.md"
    text = markdown(run, environment, png.name if has_plot else None)
    if not has_plot:
        text += "\nInstall the `plot` extra (`pip install pytest-rnnmemory[plot]`) for the plot.\n"
    _write_atomic(md, text)
    written.append(md)
    js = report_dir / f"{run.name}.json"
    _write_atomic(js, json.dumps(to_json(run, environment), indent=1, allow_nan=False) + "\n")
    written.append(js)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return written


def _write_atomic(path: Path, text: str) -> None:
    # A run killed while writing must not leave half a report over the last good one.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
