"""The capability report: a suite's verdicts as markdown, JSON, a plot and a terminal table."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

from tabulate import tabulate

from . import figures
from .atomic import write_atomic
from .diagnosis import BAND, Shape, shape_of
from .errors import FiguresInterrupted, ReportWriteError, StoredDataError
from .gate import BASELINE_KIND, Baseline
from .literature import literature
from .recipes import searches
from .records import CaseKey, CaseRecord, ImpliedVerdict, SuiteMeta, frontier_text
from .results import SuiteRun
from .schema import SuiteConfig
from .schema import name as check_name
from .search_report import recipe_text, search_section, sequences_section
from .stats import MARKS, interval_label
from .stored import Fields

#: Version of the JSON report's layout; bumped when a key changes meaning or goes away.
SCHEMA_VERSION = 2
#: The versions :func:`run_from_json` reads: 1 had no recipe search and no sequences to learn.
READS = (1, 2)

MISSING = "—"


def cell_text(record: CaseRecord | ImpliedVerdict | None, *, interval: bool = True) -> str:
    """One table cell: verdict mark, k/n and (optionally) the interval of the rate."""
    if record is None:
        return f"{MISSING} missing"
    if isinstance(record, ImpliedVerdict):  # a verdict that --rnn-frontier implied instead of training
        return f"({MARKS[record.verdict]}) implied"
    text = f"{MARKS[record.verdict]} {record.k}/{record.n}"
    if interval:
        d = record.decision
        text += f" {d.interval_text}"
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


def terminal_table(run: SuiteRun, shown: SuiteRun | None = None) -> str:
    """The compact table for pytest's terminal summary; ``shown``: the report as written, which may
    keep an earlier run's verdicts (:meth:`.SuiteRun.completed_by`)."""
    table = tabulate(capability_rows(run, interval=False), headers=["length", *run.cells])
    cells = [c for c in run.cells if c not in run.controls]
    frontiers = ", ".join(f"{c} {_terminal_frontier(run, shown, c)}" for c in cells)
    lines = [table, f"frontier (largest length learned): {frontiers}"]
    lines += [_leak_text(control, lengths) for control, lengths in run.leaky_controls().items()]
    return "\n".join(lines)


def _terminal_frontier(run: SuiteRun, shown: SuiteRun | None, cell: str) -> str:
    """A cell's frontier in this run, and the report's where it differs for verdicts it keeps."""
    text = run.frontier_text(cell)
    if shown is None or not any(c == cell for c, _ in shown.kept):
        return text
    report = shown.frontier_text(cell)
    if not run.has_verdict(cell):
        return f"{text} (the report keeps {report} from an earlier run)"
    if report != text:
        return f"{text} (the report: {report}, with verdicts kept from an earlier run)"
    return text


def _shuffled_text(run: SuiteRun) -> list[str]:
    """Which cell the ``shuffled`` control trained, where it ran."""
    record = next((r for (cell, _), r in run.records.items() if cell == "shuffled"), None)
    if record is None:
        return []
    trained = run.trained_cell(record)
    return [f"The `shuffled` control trains {trained}, the suite file's first cell, on shuffled targets.", ""]


def _leak_text(control: str, lengths: list[int]) -> str:
    where = ", ".join(map(str, lengths))
    return (
        f"WARNING: the {control} control learns at length {where}: the success criterion is "
        "reachable without memory there, so a cell's success says nothing about its memory"
    )


#: The figures of a report: file suffix, drawing function, caption.
FIGURES = {
    "capability": ("", figures.capability, "success rate against length, and every trial's final metric"),
    "curves": ("-curves", figures.curves, "training curves per case"),
    "gradients": ("-gradients", figures.gradients, "gradient reaching the first input, against length"),
    "search": ("-search", figures.search, "tuning success rate of every recipe, per cell and length"),
    "sequences": ("-sequences", figures.sequences, "training sequences to learn, against length"),
}


def record_shape(record: CaseRecord) -> Shape:
    """Where a case's trials ended (:func:`.diagnosis.shape_of`), from its record alone."""
    trials = record.trials
    return shape_of([t.metric for t in trials], [t.diverged for t in trials], record.threshold, record.chance)


def markdown(run: SuiteRun, environment: dict[str, str], plots: dict[str, str] | None = None) -> str:
    """The markdown report of one suite; ``plots`` maps figure names (see :data:`FIGURES`) to files."""
    plots = plots or {}
    verdict = run.config.verdict
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
        run.meta.description or f"Task `{run.meta.task}`.",
        "",
        f"A case is one (cell, length). Each trains **{verdict.trials} independent trials**; "
        f"{_success_text(run)} (chance: {chance}). The verdict is `learns` when the success rate is "
        f"significantly above p0 = {verdict.p0} (one-sided exact binomial test, alpha = {verdict.alpha}), "
        "`fails` when significantly below, and `inconclusive` otherwise.",
        "",
        "## Capability",
        "",
        "✓ learns, ✗ fails, ? inconclusive, — missing; k/n successes and the exact "
        f"{interval_label(verdict.alpha)} interval of the rate, which lies above p0 exactly where a "
        "cell learns and below where it fails.",
        "",
        tabulate(capability_rows(run), headers=["length", *run.cells], tablefmt="github"),
        "",
        *_shuffled_text(run),
        *_frontier_section(run),
    ]
    if "capability" in plots:
        lines += [f"![{FIGURES['capability'][2]}]({plots['capability']})", ""]
    lines += _literature_section(run)
    lines += ["## Cases", "", _case_table(run), ""]
    lines += search_section(run, plots, FIGURES["search"][2])
    lines += sequences_section(run, plots, FIGURES["sequences"][2])
    lines += _why_section(run, plots)
    lines += _generalisation_section(run)
    if run.baseline is not None:
        lines += _baseline_section(run)
    if run.implied:
        lines += [
            "## Not trained: implied by the frontier search",
            "",
            "`--rnn-frontier` assumes that success falls with length and skipped these lengths:",
            "",
            *[f"- {c}-L{n}: {r.verdict}, because {r.reason}" for (c, n), r in sorted(run.implied.items())],
            "",
        ]
    if run.missing:
        lines += [
            "## Missing",
            "",
            "Cases of the suite without a result: not run (deselected, or another configuration ran), "
            "interrupted, or raised an error (shown):",
            "",
            *[
                f"- {c}-L{n}" + (f": raised {run.errors[c, n]}" if (c, n) in run.errors else "")
                for c, n in run.missing
            ],
            "",
        ]
    lines += [
        "## Configuration",
        "",
        f"- suite file: `{run.meta.path}`" + (f", profile `{run.meta.profile}`" if run.meta.profile else ""),
        f"- seed: {run.config.suite.seed}",
        f"- wall time of the cases: {run.wall_s:.1f} s" + _tuning_time(run),
        *[f"- {k}: {v}" for k, v in environment.items()],
        "",
        "```toml",
        _toml(run.config.to_json()),
        "```",
        "",
    ]
    return "\n".join(lines)


def _frontier_section(run: SuiteRun) -> list[str]:
    """Each cell's frontier, and which rest on verdicts kept from an earlier run."""
    cells = [c for c in run.cells if c not in run.controls]
    if not run.kept:
        return [
            "## Frontier",
            "",
            "The largest length each cell learns in this run.",
            "",
            tabulate(
                [[c, run.frontier_text(c)] for c in cells], headers=["cell", "frontier"], tablefmt="github"
            ),
            "",
        ]
    kept = ", ".join(f"{c}-L{n}" for c, n in run.ordered_cases if (c, n) in run.kept)
    return [
        "## Frontier",
        "",
        "The largest length each cell learns, over the verdicts of this report. It keeps an earlier "
        f"run's verdicts of the cases this run did not run again: {kept}; *from* says whose verdicts "
        "each frontier rests on.",
        "",
        tabulate(
            [[c, run.frontier_text(c), _frontier_from(run, c)] for c in cells],
            headers=["cell", "frontier", "from"],
            tablefmt="github",
        ),
        "",
    ]


def _frontier_from(run: SuiteRun, cell: str) -> str:
    """Whose verdicts a cell's frontier rests on: this run's, an earlier run's kept, or both."""
    lengths = [
        n for c, n in run.ordered_cases if c == cell and ((c, n) in run.records or (c, n) in run.implied)
    ]
    kept = [n for n in lengths if (cell, n) in run.kept]
    if not lengths:
        return ""
    if not kept:
        return "this run"
    if len(kept) == len(lengths):
        return "an earlier run"
    return f"this run, and an earlier run at length {', '.join(map(str, kept))}"


_STATISTIC_TEXT = {
    "mean_sequences": "mean training sequences to learn",
    "best_accuracy": "best accuracy",
    "success_rate": "success rate",
}


def _figure_text(statistic: str, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if statistic == "mean_sequences" else f"{value:.3f}"


def _tuning_time(run: SuiteRun) -> str:
    """The tuning trials' training time beside the cases', and of how many searched cases where a
    report written before it was measured keeps the others (a partial run merged into it)."""
    if run.tuning_s is None:
        return ""
    searched = [r.search for r in run.records.values() if r.search]
    measured = sum(s.wall_s is not None for s in searched)
    whose = (
        "their recipes"
        if measured == len(searched)
        else f"the recipes of {measured} of the {len(searched)} searched cases (the others' was not measured)"
    )
    return f", and {run.tuning_s:.1f} s of tuning trials choosing {whose}"


def _literature_section(run: SuiteRun) -> list[str]:
    """The source's figures beside ours (see :mod:`.literature`)."""
    reference = run.config.reference
    if reference is None:
        return []
    rows = []
    for c in literature(reference, run.records):
        f = c.figure
        statistic = _STATISTIC_TEXT[f.statistic]
        if f.eval_length not in (0, f.length):
            statistic += f" at length {f.eval_length}"
        interval = (
            ""
            if c.low is None
            else f" [{_figure_text(f.statistic, c.low)}, {_figure_text(f.statistic, c.high)}]"
        )
        verdict = "—" if c.verdict is None else f"{MARKS[c.verdict]} {c.verdict} ({c.k}/{c.n})"
        rows.append(
            [
                f.cell,
                f.length,
                statistic,
                f"{_figure_text(f.statistic, f.value)} (over {f.trials})",
                _figure_text(f.statistic, c.ours) + interval,
                c.agreement,
                c.note,
                verdict,
                f.differs,
            ]
        )
    return [
        "## Literature",
        "",
        f"**{reference.source}**" + (f": {reference.setup}" if reference.setup else ""),
        "",
        "Each published figure beside the same statistic over this run's verdict trials (never the "
        "tuning trials that chose their recipe), with its 95% interval: Clopper-Pearson for a rate, an "
        "expanded percentile bootstrap for a mean, and for the best of k the bootstrap distribution of a "
        "maximum (exact). *agrees*: the figure lies inside our interval. *what differs*: between the "
        "source's setup and ours, as the suite states it, whatever the agreement.",
        "",
        tabulate(
            rows,
            headers=[
                "cell",
                "length",
                "statistic",
                "source",
                "ours [95%]",
                "",
                "ours over",
                "verdict",
                "what differs",
            ],
            tablefmt="github",
        ),
        "",
    ]


def _why_section(run: SuiteRun, plots: dict[str, str]) -> list[str]:
    """Where failed trials ended, the training curves, and the gradient at the first step."""
    lines = [
        "## Why a case fails",
        "",
        f"Failed trials by their final metric: *at chance* (within {BAND} of the chance level), "
        f"*near threshold* (within {BAND} below it), *between*, or *diverged*. **stuck at chance**: the "
        "cell never found the signal; **bimodal**: some initialisations find it and others never do; "
        "**near the threshold**: more training or a lower threshold would pass them; **spread**: trials "
        "were still learning when training stopped.",
        "",
    ]
    rows = []
    for cell, length in run.ordered_cases:
        record = run.records.get((cell, length))
        if record is None or record.k == record.n:
            continue
        shape = record_shape(record)
        rows.append([cell, length, f"{record.k}/{record.n}", shape.shape, shape.describe()])
    if rows:
        lines += [
            tabulate(rows, headers=["cell", "length", "k/n", "pattern", "failed trials"], tablefmt="github"),
            "",
        ]
    else:
        lines += ["Every trial of every case learned.", ""]
    if "curves" in plots:
        lines += [
            "Training curves (validation metric and training loss per epoch; median, interquartile "
            "band and range over trials, and the trials with the lowest, median and highest final metric):",
            "",
            f"![{FIGURES['curves'][2]}]({plots['curves']})",
            "",
        ]
    gradient_rows = _gradient_rows(run)
    if gradient_rows:
        lines += [
            "Gradient at the first step: the norm of the loss's gradient with respect to the first "
            "input, at the initial weights (median over trials). Where it falls by orders of magnitude "
            "with length, the first input's signal vanishes before training starts (see the README).",
            "",
            tabulate(gradient_rows, headers=["length", *run.cells], tablefmt="github", disable_numparse=True),
            "",
        ]
        if "gradients" in plots:
            lines += [f"![{FIGURES['gradients'][2]}]({plots['gradients']})", ""]
    return lines


def _gradient_rows(run: SuiteRun) -> list[list[str]]:
    if not any(r.input_gradient is not None for r in run.records.values()):
        return []  # a report from before the diagnostic was recorded
    rows = []
    for length in run.lengths:
        row = [str(length)]
        for cell in run.cells:
            record = run.records.get((cell, length))
            value = None if record is None else record.input_gradient
            row.append("" if value is None else f"{value:.2e}")
        rows.append(row)
    return rows


def _generalisation_section(run: SuiteRun) -> list[str]:
    """Success of the trained trials at the evaluation lengths, per case."""
    rows = []
    for cell, length in run.ordered_cases:
        record = run.records.get((cell, length))
        for entry in () if record is None else record.generalisation:
            d = entry.decision
            rows.append(
                [
                    cell,
                    length,
                    f"{MARKS[record.verdict]} {record.k}/{record.n}",
                    entry.length,
                    f"{MARKS[d.verdict]} {d.k}/{d.n}",
                    d.interval_text,
                    f"{entry.metric_median:.3f}",
                ]
            )
    if not rows:
        return []
    return [
        "## Length generalisation",
        "",
        "Each case's trained trials, evaluated on fresh sequences at other lengths without further "
        "training; a trial succeeds there as at its own length (same metric and threshold).",
        "",
        tabulate(
            rows,
            headers=[
                "cell",
                "trained at",
                "there",
                "evaluated at",
                "k/n",
                f"{interval_label(run.config.verdict.alpha)} CI",
                "median metric",
            ],
            tablefmt="github",
            disable_numparse=True,
        ),
        "",
    ]


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
            *(["" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"] if run.holm else []),
            "" if c.p_rise is None else f"{c.p_rise:.3g}",
        ]
        for c in run.comparisons
    ]
    correction = "Holm-adjusted across this suite's cases" if run.holm else "not adjusted (`--rnn-no-holm`)"
    frontier = []
    for cell in run.cells:
        frontiers = run.compared_frontiers(cell)
        then, now = ("not compared",) * 2 if frontiers is None else map(frontier_text, frontiers)
        frontier.append([cell, then, now])
    return [
        "## Against the baseline",
        "",
        f"Baseline `{baseline.path.name}` of {baseline.created}. A case regressed when its success rate "
        f"is significantly lower (one-sided {run.config.verdict.regression_test} test, {correction}, "
        f"alpha = {run.config.verdict.alpha}); a significant rise is "
        "reported, never failed; a case whose configuration changed is not comparable.",
        "",
        tabulate(
            rows,
            headers=[
                "cell",
                "length",
                "status",
                "now",
                "baseline",
                "p (drop)",
                *(["Holm"] if run.holm else []),
                "p (rise)",
            ],
            tablefmt="github",
        ),
        "",
        "Each cell's frontier then and now, both over the cases compared:",
        "",
        tabulate(frontier, headers=["cell", "frontier then", "frontier now"], tablefmt="github"),
        "",
    ]


def _success_text(run: SuiteRun) -> str:
    """What decides a trial's success: its final validation metric, or with ``train.stop = "learned"``
    its metric on a fresh test set, the validation metric only stopping its training."""
    train, success = run.config.train, run.config.success
    if train.stop != "learned":
        return f"a trial succeeds when its validation {success.metric} reaches **{success.threshold}**"
    return (
        f"a trial trains until its validation {success.metric} reaches {success.threshold} (checked every "
        f"{train.check_interval:,} training sequences) or its budget ends, and succeeds when its "
        f"{success.metric} on {train.test_samples or train.val_samples:,} fresh test sequences reaches "
        f"**{success.threshold}**"
    )


def _chance_text(run: SuiteRun) -> str:
    """The task's chance level: one value, or one per length where it depends on length."""
    by_length = run.chance
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
        d = r.decision
        settled = f" (settled after {r.n} of {r.trials_planned} trials)" if r.trials_planned > r.n else ""
        rows.append(
            [
                cell,
                length,
                f"{r.verdict}{settled}",
                f"{r.k}/{r.n}",
                d.interval_text,
                f"{d.p_greater:.3g}",
                f"{d.p_less:.3g}",
                f"{r.metric_median:.3f}",
                f"{r.metric_mean:.3f} / {r.metric_max:.3f}",
                r.diverged,
                f"{r.wall_s:.1f}",
            ]
        )
    headers = [
        "cell",
        "length",
        "verdict",
        "k/n",
        f"{interval_label(run.config.verdict.alpha)} CI",
        "p (>p0)",
        "p (<p0)",
        "median metric",
        "mean / max metric",
        "diverged",
        "time (s)",
    ]
    if any(record.recipe for record in run.records.values()):
        headers.append("recipe")
        for row, (cell, length) in zip(rows, run.ordered_cases, strict=True):
            record = run.records.get((cell, length))
            row.append("" if record is None else recipe_text(record))
    return tabulate(rows, headers=headers, tablefmt="github")


def _toml(config: dict[str, Any]) -> str:
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        tables = {k: v for k, v in values.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
        for k, v in values.items():
            if k not in tables:
                out.append(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}")
        for k, rows in tables.items():  # arrays of tables, such as [[reference.figures]]
            for row in rows:
                out += ["", f"[[{section}.{k}]]", *[f"{name} = {json.dumps(v)}" for name, v in row.items()]]
        out.append("")
    return "\n".join(out).rstrip()


def to_json(run: SuiteRun, environment: dict[str, str]) -> dict[str, Any]:
    """The JSON report of one suite: everything, every trial's final metric included."""
    meta = run.meta
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": meta.name,
        "description": meta.description,
        "path": meta.path,
        "task": meta.task,
        "profile": meta.profile,
        "config": meta.config.to_json(),
        "environment": environment,
        "wall_s": round(run.wall_s, 3),
        **({} if run.tuning_s is None else {"tuning_s": round(run.tuning_s, 3)}),
        "frontier": {c: run.frontier(c) for c in run.cells if c not in run.controls and run.has_verdict(c)},
        "leaky_controls": run.leaky_controls(),
        "cases": [
            {**record.to_json(), "failures": dataclasses.asdict(record_shape(record))}
            for record in run.records_in_order()
        ],
        "missing": [
            {"cell": c, "length": n, **({"error": run.errors[c, n]} if (c, n) in run.errors else {})}
            for c, n in run.missing
        ],
        "implied": [r.to_json() for _, r in sorted(run.implied.items())],
        **(
            {"kept": [{"cell": c, "length": n} for c, n in run.ordered_cases if (c, n) in run.kept]}
            if run.kept
            else {}
        ),
        "literature": [c.to_json() for c in literature(run.config.reference, run.records)]
        if run.config.reference
        else [],
        **({"gate": _gate_json(run)} if run.baseline is not None else {}),
    }


def _gate_json(run: SuiteRun) -> dict[str, Any]:
    """What the gate compared, kept so that the report renders again with it: the baseline's cases
    of this suite, the correction and the cases compared (the findings follow from these)."""
    assert run.baseline is not None
    return {
        "baseline": run.baseline.to_report(run.name),
        "holm": run.holm,
        "compared": [{"cell": c.cell, "length": c.length} for c in run.comparisons],
    }


def _judge_again(run: SuiteRun, gate: Fields) -> None:
    """The gate's findings of a stored run, computed again from its counts and the baseline's."""
    compared = gate.objects("compared", _case_key)
    for i, key in enumerate(compared):
        if key not in run.records:
            raise StoredDataError(f"{gate.at('compared')}[{i}]: {key[0]} at length {key[1]} is not in cases")
    baseline = Baseline.from_report(gate.raw("baseline"), gate.at("baseline"))
    run.judge(baseline, holm=gate.boolean("holm"), cases=set(compared))


def run_from_json(data: Any) -> SuiteRun:
    """A :class:`.SuiteRun` rebuilt from a JSON report, to render it again without training.

    Raises :class:`.StoredDataError` naming the first place where ``data`` is
    not a report this version writes.
    """
    f = Fields(data, "")
    if f.has("kind") and f.raw("kind") == BASELINE_KIND:
        raise StoredDataError(
            "it is a baseline (written by --rnn-save-baseline); "
            "a run writes its reports as reports/<suite>.json"
        )
    version = f.raw("schema_version")
    if isinstance(version, bool) or version not in READS:
        raise StoredDataError(
            f"schema_version {version!r}: this version of pytest-rnnmemory reads reports of version "
            f"{' and '.join(map(str, READS))}"
        )
    suite = f.text("suite")
    problem = check_name(suite) if suite else "must not be empty"
    if problem:  # a suite file's own rule: a run names its report's files after it
        raise StoredDataError(f'suite = "{suite}": {problem}')
    meta = SuiteMeta(
        name=suite,
        description=f.text("description") if f.has("description") else "",
        path=f.text("path") if f.has("path") else "",
        task=f.text("task"),
        profile=f.text("profile", optional=True) if f.has("profile") else None,
        config=SuiteConfig.from_json(f.raw("config"), "config"),
    )
    records = f.objects("cases", CaseRecord.from_json)
    implied = f.objects("implied", ImpliedVerdict.from_json) if f.has("implied") else ()
    missing = f.objects("missing", _missing_case) if f.has("missing") else ()
    _check_each_case_once(
        [
            *(("cases", r.key) for r in records),
            *(("implied", v.key) for v in implied),
            *(("missing", key) for key, _ in missing),
        ]
    )
    _check_recipes(records, meta.config)
    run = SuiteRun(meta=meta, expected=[*(r.key for r in records), *(key for key, _ in missing)])
    run.errors = {key: error for key, error in missing if error is not None}
    for record in records:
        run.records[record.key] = record
    for verdict in implied:
        run.add_implied(verdict)
    kept = f.objects("kept", _case_key) if f.has("kept") else ()
    for i, key in enumerate(kept):
        if key not in run.records and key not in run.implied:
            raise StoredDataError(
                f"{f.at('kept')}[{i}]: {key[0]} at length {key[1]} is in neither cases nor implied"
            )
    run.kept = set(kept)
    run.wall_s = f.number("wall_s") if f.has("wall_s") else 0.0
    if f.has("gate"):
        _judge_again(run, f.fields("gate"))
    return run


def _check_each_case_once(places: list[tuple[str, CaseKey]]) -> None:
    """A report holds each case once: among its cases, its implied verdicts and its missing cases."""
    seen: dict[CaseKey, str] = {}
    counts: dict[str, int] = {}
    for key, case in places:
        where = f"{key}[{counts.get(key, 0)}]"
        counts[key] = counts.get(key, 0) + 1
        if case in seen:
            raise StoredDataError(
                f"{where}: {case[0]} at length {case[1]} again (first at {seen[case]}); "
                "a report holds each case once"
            )
        seen[case] = where


def _check_recipes(records: tuple[CaseRecord, ...], config: SuiteConfig) -> None:
    """Each case's recipe is a recipe of the suite's ``[search]`` grid: one value of each of its
    keys, the grid's only recipe where it holds one (none where the suite has no grid)."""
    grid = dict(config.grid)
    for i, record in enumerate(records):
        recipe = record.recipe
        if recipe.keys() == grid.keys() and all(recipe[k] in grid[k] for k in recipe):
            continue
        axes = "; ".join(f"{k} ({', '.join(map(str, values))})" for k, values in grid.items())
        if not grid:
            allowed = "{} (the suite searches nothing)"
        elif searches(config.grid):
            allowed = f"one value of each of {axes}"
        else:
            allowed = f"the grid's only recipe, {axes}"
        raise StoredDataError(
            f"cases[{i}].recipe ({record.cell} at length {record.length}): {json.dumps(recipe)} is not a "
            f"recipe of the suite's [search] grid; allowed: {allowed}"
        )


def read_report(path: Path) -> tuple[SuiteRun, dict[str, str]]:
    """The run a JSON report holds, and its environment; :class:`.StoredDataError` says what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoredDataError(f"cannot read the JSON report: {exc}") from None
    run = run_from_json(data)
    f = Fields(data, "")
    # read as it is written again: a value of another type was dropped or changed without a word
    environment = f.mapping("environment") if f.has("environment") else {}
    for key, value in environment.items():
        if not isinstance(value, str):
            raise StoredDataError(
                f"environment.{key}: expected a string (a version, the device), got {value!r}"
            )
    return run, environment


def _case_key(data: Any, where: str) -> tuple[str, int]:
    f = Fields(data, where)
    return f.text("cell"), f.integer("length", minimum=1)


def _missing_case(data: Any, where: str) -> tuple[tuple[str, int], str | None]:
    f = Fields(data, where)
    return _case_key(data, where), f.text("error") if f.has("error") else None


#: The file GitHub Actions shows below a job's steps: where it is set, each report is appended to it.
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


class StepSummaryWarning(UserWarning):
    """A report that could not be appended to the file :data:`STEP_SUMMARY` names."""


def write_reports(
    run: SuiteRun,
    report_dir: Path,
    environment: dict[str, str],
    *,
    figures: bool = True,
    name: str | None = None,
    interrupted: bool = False,
) -> list[Path]:
    """Write ``<name>.md``, ``<name>.json`` and (unless ``figures`` is off) the figures, ``name`` the
    suite's unless given; the paths. A file that cannot be written leaves the others to be written,
    and :class:`.ReportWriteError` names it afterwards. Ctrl-C while the figures are drawn, or
    ``interrupted`` (an earlier report's were), leaves them undrawn, writes the rest, and raises
    :class:`.FiguresInterrupted`."""
    name = name or run.name
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportWriteError([(report_dir, _why(exc))], []) from None
    written: list[Path] = []
    unwritten: list[tuple[Path, str]] = []
    plots: dict[str, str] = {}
    for figure, (suffix, draw, _) in FIGURES.items():
        png = report_dir / f"{name}{suffix}.png"
        try:
            if figures and not interrupted and run.records and draw(run, png):
                plots[figure] = png.name
                written.append(png)
            elif png.is_file():
                png.unlink()  # an earlier run's figure would contradict this report
        except KeyboardInterrupt:
            # Ctrl-C while the figures are drawn, the slowest part of a report: the markdown and
            # the JSON, which hold what the run finished, are still written below, and the figure
            # cut short is removed as the ones not drawn are
            interrupted = True
            png.unlink(missing_ok=True)
        except OSError as exc:
            unwritten.append((png, _why(exc)))
    text = markdown(run, environment, plots)
    if interrupted:
        text += (
            "\nFigures were not all drawn: the run was interrupted while drawing them "
            f"(`python -m pytest_rnnmemory report {name}.json` draws them).\n"
        )
    elif run.records and not figures:
        text += "\nFigures were not drawn (`--rnn-figures=off`).\n"
    elif run.records and not plots:
        text += "\nInstall matplotlib (`pip install matplotlib`) for the figures.\n"
    data = json.dumps(to_json(run, environment), indent=1, allow_nan=False) + "\n"
    for path, content in ((report_dir / f"{name}.md", text), (report_dir / f"{name}.json", data)):
        try:
            write_atomic(path, content)
            written.append(path)
        except OSError as exc:
            unwritten.append((path, _why(exc)))
    append_step_summary(run.name, text)
    if interrupted:
        raise FiguresInterrupted(written, unwritten)
    if unwritten:
        raise ReportWriteError(unwritten, written)
    return written


def append_step_summary(suite: str, text: str) -> None:
    """Append ``suite``'s markdown report to the file :data:`STEP_SUMMARY` names, where it is set;
    a :class:`StepSummaryWarning` where it cannot be."""
    summary = os.environ.get(STEP_SUMMARY)
    if not summary:
        return
    try:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        with warnings.catch_warnings():
            # never an error (-W error): the run's other reports and its baseline are still to write
            warnings.simplefilter("always", StepSummaryWarning)
            warnings.warn(
                StepSummaryWarning(
                    f"{STEP_SUMMARY}={summary}: the {suite} report could not be appended there ({_why(exc)})"
                ),
                stacklevel=2,
            )


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
