"""The report as a reader sees it, from records alone: sections, figures, re-rendering, comparing."""

import copy
import dataclasses
import inspect
import json
import math
import statistics
import subprocess
import sys
from itertools import pairwise

import pytest

from pytest_rnnmemory import figures
from pytest_rnnmemory.__main__ import main
from pytest_rnnmemory.compare import compare_reports, config_differences
from pytest_rnnmemory.errors import StoredDataError
from pytest_rnnmemory.figures import curve_lengths
from pytest_rnnmemory.gate import load_baseline, save_baseline
from pytest_rnnmemory.report import markdown, run_from_json, terminal_table, to_json, write_reports
from pytest_rnnmemory.stats import decide
from pytest_rnnmemory.usercode import EVALUATION
from tests import cells_for_tests
from tests.records import record_of

CONFIG = {
    "suite": {
        "task": "latching",
        "name": "demo",
        "seed": 0,
        "cells": ["rnn", "lstm"],
        "lengths": [5, 10, 20, 50, 100, 200, 400, 800],
    },
    "task": {"noise": 0.1},
    "model": {"hidden": 1},
    "train": {"samples": 100, "epochs": 3},
    "success": {"metric": "accuracy", "threshold": 0.95},
    "verdict": {"trials": 10, "p0": 0.5, "alpha": 0.05, "regression_test": "boschloo"},
}


def record(cell, length, metrics, gradient=1e-3, generalisation=()):
    """A case's record as the plugin writes it, for ``metrics`` of its trials."""
    k = sum(m >= 0.95 for m in metrics)
    decision = decide(k, len(metrics))
    return {
        "suite": "demo",
        "cell": cell,
        "control": False,
        "length": length,
        "config_hash": f"hash-{cell}-{length}",
        **decision.to_dict(),
        "rate": decision.rate,
        "metric": "accuracy",
        "threshold": 0.95,
        "chance": 0.5,
        "metric_median": sorted(metrics)[len(metrics) // 2],
        "metric_mean": sum(metrics) / len(metrics),
        "metric_max": max(metrics),
        "diverged": 0,
        "scheme": "stepwise",
        "device": "cpu",
        "wall_s": 1.0,
        "input_gradient": gradient,
        "generalisation": list(generalisation),
        "trials": [
            {
                "index": i,
                "seed": 100 + i,
                "metric": m,
                "success": m >= 0.95,
                "diverged": False,
                "train_loss": [0.7, 0.5 if m > 0.9 else 0.69, 0.1 if m > 0.9 else 0.69],
                "val_metric": [0.5, 0.8 if m > 0.9 else 0.5, m],
                "input_gradient": gradient * (1 + i / 10),
                "eval_metrics": [],
            }
            for i, m in enumerate(metrics)
        ],
    }


def report_data(lengths=(5, 10, 20, 50, 100, 200, 400, 800)):
    cases = []
    for cell, frontier in (("rnn", 50), ("lstm", 10)):
        for length in lengths:
            metrics = [1.0] * 9 + [0.5] if length <= frontier else [0.5] * 8 + [0.93, 0.7]
            cases.append(record(cell, length, metrics, gradient=10.0 ** (-length / 100)))
    config = json.loads(json.dumps(CONFIG))
    config["suite"]["lengths"] = list(lengths)
    return {
        "schema_version": 1,
        "suite": "demo",
        "description": "",
        "path": "suites/demo.toml",
        "task": "latching",
        "profile": None,
        "config": config,
        "environment": {"torch": "x"},
        "wall_s": 3.0,
        "cases": cases,
    }


def test_the_why_section_names_each_failing_cases_pattern():
    text = markdown(run_from_json(report_data()), {})
    assert "## Why a case fails" in text
    assert (
        "| rnn    |      100 | 0/10  | stuck at chance | 8 at chance, 1 between, 1 near threshold |" in text
    )
    assert "| rnn    |        5 | 9/10  | bimodal" not in text.split("## Why")[0]  # only in its own section
    assert "bimodal" in text


def test_the_gradient_figure_plots_the_tables_median_over_every_trial():
    """Zeros counted: a case whose trials mostly take no gradient has a median of 0, left off the
    log axis, not the median of the few that took one (which climbed back to 1e-11 at L = 140)."""
    from pytest_rnnmemory.figures import gradient_quartiles

    mostly_zero = run_from_json(report_data(lengths=(5,))).records["rnn", 5]
    trials = [dataclasses.replace(t, input_gradient=0.0 if t.index else 7e-11) for t in mostly_zero.trials]
    assert gradient_quartiles(dataclasses.replace(mostly_zero, trials=tuple(trials))) is None
    three_zero = [
        dataclasses.replace(t, input_gradient=0.0 if t.index < 3 else 10.0**-t.index) for t in trials
    ]
    q1, median, q3 = gradient_quartiles(dataclasses.replace(mostly_zero, trials=tuple(three_zero)))
    assert (
        median == statistics.median([0.0] * 3 + [10.0**-i for i in range(3, 10)]) and q1 == 0.0 < median < q3
    )


def test_the_gradient_figure_breaks_a_cells_line_at_a_length_without_counts():
    """rnn at 20 raised: its gradient line went straight from 10 to 50 over it."""
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5, 10, 20, 50))
    data["cases"] = [c for c in data["cases"] if (c["cell"], c["length"]) != ("rnn", 20)]
    data["missing"] = [{"suite": "demo", "cell": "rnn", "length": 20, "error": "RuntimeError: boom"}]
    fig = figures.gradients_figure(run_from_json(data))
    rnn, lstm = (container.lines[0] for container in fig.axes[0].containers)
    assert list(rnn.get_xdata()) == [5, 10, 20, 50] and math.isnan(rnn.get_ydata()[2])
    assert list(lstm.get_xdata()) == [5, 10, 20, 50] and not any(map(math.isnan, lstm.get_ydata()))
    figures.pyplot().close(fig)


def test_the_gradient_figure_breaks_a_cells_line_at_a_median_of_zero():
    """A median of 0 has no place on the log axis: a line over it joined its neighbours as if
    gradients between theirs had been measured there (latching_1994's RNN at 70 and 80)."""
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5, 10, 20, 50))
    for case in data["cases"]:
        if (case["cell"], case["length"]) == ("rnn", 20):
            for trial in case["trials"]:
                trial["input_gradient"] = 0.0
    fig = figures.gradients_figure(run_from_json(data))
    rnn, lstm = (container.lines[0] for container in fig.axes[0].containers)
    assert list(rnn.get_xdata()) == [5, 10, 20, 50] and math.isnan(rnn.get_ydata()[2])
    assert not any(map(math.isnan, lstm.get_ydata()))
    figures.pyplot().close(fig)


def test_gradients_are_tabled_per_length_and_cell_in_scientific_notation():
    text = markdown(run_from_json(report_data()), {})
    assert "Gradient at the first step" in text
    assert "| 800      | 1.00e-08 | 1.00e-08 |" in text


def test_generalisation_is_reported_per_evaluation_length():
    data = report_data(lengths=(5,))
    entry = {"length": 10, **decide(3, 10).to_dict(), "rate": 0.3, "metric_median": 0.61, "metric_mean": 0.6}
    data["cases"][0]["generalisation"] = [entry]
    for i, trial in enumerate(data["cases"][0]["trials"]):
        trial["eval_metrics"] = [0.96 if i < 3 else 0.5]
    text = markdown(run_from_json(data), {})
    assert "## Length generalisation" in text
    assert (
        "| rnn    | 5            | ✓ 9/10  | 10             | ? 3/10 | [0.09, 0.61] | 0.610           |"
        in text
    )
    assert "## Length generalisation" not in markdown(run_from_json(report_data(lengths=(5,))), {})


def test_curves_show_each_cells_frontier_and_the_next_length_when_lengths_are_many():
    run = run_from_json(report_data())
    chosen = curve_lengths(run, limit=6)
    assert len(chosen) == 6
    assert {50, 100, 10, 20} <= set(chosen)  # rnn: 50 and 100; lstm: 10 and 20
    assert curve_lengths(run_from_json(report_data(lengths=(5, 10))), limit=6) == [5, 10]


def without_counts(data, implied, raised, unfinished):
    """``data`` whose (cell, length) cases ``implied`` (a fail the frontier implied), ``raised`` and
    ``unfinished`` have no counts, as a run that left them so writes it."""
    gone = {implied, raised, unfinished}
    data["cases"] = [c for c in data["cases"] if (c["cell"], c["length"]) not in gone]
    reason = "it fails length 20, which is shorter"
    data["implied"] = [
        {"suite": "demo", "cell": implied[0], "length": implied[1], "verdict": "fails", "reason": reason}
    ]
    data["missing"] = [
        {"suite": "demo", "cell": raised[0], "length": raised[1], "error": "RuntimeError: boom"},
        {"suite": "demo", "cell": unfinished[0], "length": unfinished[1]},
    ]
    return data


def test_the_curve_figure_says_why_a_case_has_no_curves():
    """A case that raised, did not finish or was implied left a blank place in the grid, as a length
    the cell was never selected at does: its panel now says which."""
    pytest.importorskip("matplotlib")
    data = without_counts(report_data(lengths=(5, 10, 20, 50)), ("lstm", 50), ("lstm", 10), ("lstm", 20))
    data["cases"] = [c for c in data["cases"] if (c["cell"], c["length"]) != ("rnn", 50)]
    fig = figures.curves_figure(run_from_json(data))
    titles = [ax.get_title() for ax in fig.axes]
    assert "lstm, L=10: raised" in titles
    assert "lstm, L=20: did not finish" in titles
    assert "lstm, L=50: fails, implied" in titles
    assert "lstm, L=5: 9/10" in titles and not any(t.startswith("rnn, L=50") for t in titles)  # no case
    figures.pyplot().close(fig)


@pytest.mark.parametrize("cells", [("rnn",), ("rnn", "lstm", "gru", "lstm1997", "memoryless")])
def test_the_curve_figures_title_clears_the_panels_titles(cells):
    """Its three-line title sat over the top row's titles ("rnn, L=5: 9/10") where cells were many."""
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5, 10, 20, 50))
    data["config"]["suite"]["cells"] = list(cells)
    data["cases"] = [record(c, n, [1.0] * 9 + [0.5]) for c in cells for n in (5, 10, 20, 50)]
    fig = figures.curves_figure(run_from_json(data))
    fig.canvas.draw()
    title = next(t for t in fig.texts if t.get_text() == fig.get_suptitle()).get_window_extent()
    panels = [ax.title.get_window_extent() for ax in fig.axes if ax.get_title()]
    assert len(panels) == 4 * len(cells) and not any(title.overlaps(panel) for panel in panels)
    figures.pyplot().close(fig)


def test_a_single_length_figure_spans_a_decade_around_it_and_marks_each_median():
    """One length: the axis spanned the trials' jitter, so that one length's dots looked like many,
    and each median was a line of one point, which is not drawn."""
    pytest.importorskip("matplotlib")
    fig = figures.capability_figure(run_from_json(report_data(lengths=(40,))))
    bottom = fig.axes[1]
    low, high = bottom.get_xlim()
    assert bottom.get_xscale() == "log" and low <= 40 / 3 and high >= 40 * 3
    to_axes = bottom.transScale + bottom.transLimits
    dots = [to_axes.transform((x, 0))[0] for points in bottom.collections for x, _ in points.get_offsets()]
    assert len(dots) == 20 and max(dots) - min(dots) < 0.1  # of the axis's width
    medians = [line for line in bottom.get_lines() if len(line.get_xdata()) == 1]
    assert len(medians) == 2 and all(line.get_marker() not in ("None", "", " ", None) for line in medians)
    assert "median (bar)" in bottom.get_title()
    figures.pyplot().close(fig)


@pytest.mark.parametrize("lengths", [(5, 10, 20, 50), (5, 10, 20, 50, 100, 200, 400, 800), (40,)])
def test_series_at_the_same_rate_are_drawn_side_by_side(lengths):
    """memoryless (grey) lay exactly under shuffled (black) at 0/n everywhere, and lstm under rnn
    where both learned: each series now sits a little to its own side of each length."""
    pytest.importorskip("matplotlib")
    data = report_data(lengths=lengths)
    data["config"]["suite"]["controls"] = ["memoryless", "shuffled"]
    data["cases"] += [record(c, n, [0.5] * 10) for c in ("memoryless", "shuffled") for n in lengths]
    fig = figures.capability_figure(run_from_json(data))
    fig.canvas.draw()
    top = fig.axes[0]
    series = [top.transData.transform(c.lines[0].get_xydata()) for c in top.containers]
    assert len(series) == 4
    for i, a in enumerate(series):
        for b in series[i + 1 :]:
            assert all(abs(p[0] - q[0]) >= 3 for p, q in zip(a, b, strict=True))  # pixels apart
    spacing = abs(series[0][:, 0] - series[-1][:, 0])
    gaps = [b - a for a, b in pairwise(series[0][:, 0])]
    assert spacing.max() < min(gaps, default=math.inf) / 2  # nearer its own length than the next
    figures.pyplot().close(fig)


@pytest.mark.parametrize("error", ["RuntimeError: boom", None])
def test_the_capability_figure_breaks_a_cells_lines_at_a_length_without_counts(error):
    """rnn at 20 raised (or did not finish): its rate line went straight from 10 to 50, a trend
    through a case the report lists as missing; the median at 50, alone past the gap, is a bar."""
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5, 10, 20, 50))
    data["cases"] = [c for c in data["cases"] if (c["cell"], c["length"]) != ("rnn", 20)]
    data["missing"] = [{"suite": "demo", "cell": "rnn", "length": 20, **({"error": error} if error else {})}]
    fig = figures.capability_figure(run_from_json(data))
    top, bottom = fig.axes
    rnn = top.containers[0].lines[0]
    xs, ys = rnn.get_xdata(), rnn.get_ydata()
    assert list(xs) == pytest.approx([5, 10, 20, 50], rel=0.05) and math.isnan(ys[2])
    assert not any(math.isnan(y) for y in top.containers[1].lines[0].get_ydata())  # lstm: every length
    colour = rnn.get_color()
    rnn_lines = [line for line in bottom.get_lines() if line.get_color() == colour]
    medians = [list(line.get_ydata()) for line in rnn_lines]
    assert len(medians) == 2 and math.isnan(medians[0][2])
    alone = rnn_lines[1]
    assert alone.get_xdata()[0] == pytest.approx(50, rel=0.05) and alone.get_marker() == "_"
    figures.pyplot().close(fig)


def searched_data(lengths=(5, 10)):
    """A report whose cases searched init: chrono is the same as torch for the rnn, which ignores it."""
    data = report_data(lengths=lengths)
    data["schema_version"] = 2
    for case in data["cases"]:
        recipes = [
            {"index": 0, "recipe": {"model.init": "torch"}, "label": "init=torch", "k": 4, "n": 4},
            {"index": 1, "recipe": {"model.init": "chrono"}, "label": "init=chrono", "k": 1, "n": 4},
        ]
        for recipe in recipes:
            recipe.update(metric_median=0.9, metric_max=1.0, sequences_median=None, same_as=None)
        if case["cell"] == "rnn":
            recipes[1].update(k=4, same_as=0)  # a repeat carries the counts of the recipe it repeats
        case["search"] = {"scope": "case", "trials": 4, "chosen": 0, "recipes": recipes}
    return data


def test_the_search_figure_marks_a_recipe_that_repeats_another_instead_of_its_counts():
    """init=chrono for the rnn was never trained: its row showed recipe 1's 4/4 as if measured."""
    pytest.importorskip("matplotlib")
    fig = figures.search_figure(run_from_json(searched_data()))
    rnn, lstm = (next(ax for ax in fig.axes if ax.get_title() == cell) for cell in ("rnn", "lstm"))
    texts = {tuple(t.get_position()): t.get_text() for t in rnn.texts}
    assert texts == {(0, 0): "4/4", (1, 0): "4/4", (0, 1): "= 1", (1, 1): "= 1"}
    assert rnn.images[0].get_array().mask[1].all() and not rnn.images[0].get_array().mask[0].any()
    assert sum(patch.get_hatch() is not None for patch in rnn.patches) == 2
    assert {t.get_text() for t in lstm.texts} == {"4/4", "1/4"} and not lstm.images[0].get_array().mask.any()
    assert [label.get_text() for label in rnn.get_yticklabels()] == ["1. init=torch", "2. init=chrono"]
    figures.pyplot().close(fig)


def stub_run(frontiers, lengths):
    """What :func:`curve_lengths` reads of a run whose cells have ``frontiers``."""
    from types import SimpleNamespace

    return SimpleNamespace(lengths=list(lengths), cells=list(frontiers), controls=[], frontier=frontiers.get)


def test_curves_keep_every_cells_frontier_and_the_length_after_it_with_many_cells():
    """Four cells: the six smallest lengths were kept, dropping d's frontier 200 and the 500 after it."""
    lengths = (2, 5, 10, 20, 50, 100, 200, 500, 1000)
    # Eight lengths to show and six places: every frontier, then the lengths after them in the cells' order.
    many = stub_run({"a": 2, "b": 10, "c": 50, "d": 200}, lengths)
    assert curve_lengths(many) == [2, 5, 10, 20, 50, 200]
    assert curve_lengths(stub_run({"a": 2, "b": 10, "c": 200}, lengths)) == [2, 5, 10, 20, 200, 500]
    # Places left: lengths spread over the rest.
    assert curve_lengths(stub_run({"a": 2, "b": 2, "c": 1000}, lengths)) == [2, 5, 10, 50, 500, 1000]
    # More frontiers than places: every frontier, still.
    frontiers = stub_run(dict(zip("abcdefg", lengths, strict=False)), lengths)
    assert curve_lengths(frontiers, limit=4) == list(lengths[:7])


def test_reports_write_every_figure_link_them_and_render_again_identically(tmp_path):
    pytest.importorskip("matplotlib")
    data = report_data()
    source = tmp_path / "first"
    written = write_reports(run_from_json(data), source, data["environment"])
    names = sorted(p.name for p in written)
    assert names == ["demo-curves.png", "demo-gradients.png", "demo.json", "demo.md", "demo.png"]
    text = (source / "demo.md").read_text()
    for png in ("demo.png", "demo-curves.png", "demo-gradients.png"):
        assert f"]({png})" in text
        assert (source / png).stat().st_size > 10_000
    assert main(["report", str(source / "demo.json"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "demo.md").read_text() == text
    again = json.loads((tmp_path / "again" / "demo.json").read_text())
    assert again["cases"] == json.loads((source / "demo.json").read_text())["cases"]


def test_sequences_to_learn_of_too_few_trials_get_no_interval_bar(tmp_path, monkeypatch):
    """Four trials bound no median at 95%: the figure draws the median alone, not a bar from 0 to
    beyond the budget, which would read as fewer than half learned."""
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    import pytest_rnnmemory.figures as figures
    from pytest_rnnmemory.stats import sequences_to_learn

    run = run_from_json(report_data(lengths=(5, 10)))
    few, many = (
        sequences_to_learn([100, 200, 300, 400], 1000),
        sequences_to_learn([100 * i for i in range(1, 9)], 1000),
    )
    for key, record in run.records.items():
        run.records[key] = dataclasses.replace(
            record, budget=1000, sequences=few if record.length == 5 else many
        )
    bars = []
    drawn = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "errorbar",
        lambda ax, x, y, yerr, **kw: bars.append(yerr) or drawn(ax, x, y, yerr=yerr, **kw),
    )
    assert figures.sequences(run, tmp_path / "s.png")
    # per cell: lengths 5 (four trials: no bar) and 10 (eight: [100, 800] around the median 400)
    assert bars == [[[0, 300], [0, 400]]] * 2


def test_a_figure_that_cannot_be_written_is_closed_all_the_same(tmp_path):
    """pyplot keeps every figure open until it is closed: a run that failed to write many would hold
    them all."""
    plt = pytest.importorskip("matplotlib.pyplot")
    import pytest_rnnmemory.figures as figures

    plt.close("all")
    (tmp_path / "demo.png").mkdir()  # a folder where the figure goes
    with pytest.raises(OSError):
        figures.capability(run_from_json(report_data(lengths=(5, 10))), tmp_path / "demo.png")
    assert plt.get_fignums() == []


def test_without_matplotlib_the_report_says_how_to_get_the_figures(tmp_path, monkeypatch):
    import pytest_rnnmemory.figures as figures

    monkeypatch.setattr(figures, "pyplot", lambda: None)
    data = report_data(lengths=(5,))
    written = write_reports(run_from_json(data), tmp_path, {})
    assert sorted(p.name for p in written) == ["demo.json", "demo.md"]
    assert "pip install matplotlib" in (tmp_path / "demo.md").read_text()


def test_a_renamed_copy_renders_under_its_own_name_never_over_the_suites_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5, 10))
    write_reports(run_from_json(data), tmp_path, data["environment"])
    current = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    before = json.loads(json.dumps(data))
    before["cases"] = before["cases"][:1]  # an earlier run, kept for compare, that differs
    (tmp_path / "demo-before.json").write_text(json.dumps(before))
    for out in ([], ["--out", str(tmp_path)]):
        assert main(["report", str(tmp_path / "demo-before.json"), *out]) == 0
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in current} == current
    names = sorted(p.name for p in tmp_path.iterdir() if p.name not in current)
    assert names == [f"demo-before{end}" for end in ("-curves.png", "-gradients.png", ".json", ".md", ".png")]
    text = (tmp_path / "demo-before.md").read_text()
    assert "](demo-before.png)" in text and "](demo.png)" not in text
    assert json.loads((tmp_path / "demo-before.json").read_text())["suite"] == "demo"
    # --out elsewhere writes the same files there
    assert main(["report", str(tmp_path / "demo-before.json"), "--out", str(tmp_path / "again")]) == 0
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == names
    # a name without .json would write X.json beside it, which may be another report
    (tmp_path / "demo-before").write_text(json.dumps(before))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "demo-before")])
    assert "must end in .json" in capsys.readouterr().err


def test_report_out_never_writes_over_another_report_of_the_same_name(tmp_path, capsys):
    """'report reports/adding_1997.json --out reports/long' replaced the long profile's report,
    reports/long/adding_1997.json, with the default profile's."""
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5,))
    (tmp_path / "demo.json").write_text(json.dumps(data))
    other = json.loads(json.dumps(data))
    other["profile"] = "long"
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "demo.json").write_text(json.dumps(other))
    held = (tmp_path / "long" / "demo.json").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "demo.json"), "--out", str(tmp_path / "long")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'long' / 'demo.json'} holds another report than {tmp_path / 'demo.json'}" in err
    assert (tmp_path / "long" / "demo.json").read_bytes() == held
    assert sorted(p.name for p in (tmp_path / "long").iterdir()) == ["demo.json"]
    # the same report there, as copied or as rendered before, is rendered again
    for _ in range(2):
        assert main(["report", str(tmp_path / "demo.json"), "--out", str(tmp_path / "again")]) == 0
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "demo.json").write_text(json.dumps(data, indent=4))
    assert main(["report", str(tmp_path / "demo.json"), "--out", str(tmp_path / "copy")]) == 0


def test_report_warns_of_a_step_summary_it_cannot_append_to_and_names_a_file_it_cannot_write(
    tmp_path, monkeypatch, capsys
):
    import pytest_rnnmemory.figures as figures

    monkeypatch.setattr(figures, "pyplot", lambda: None)
    summary = tmp_path / "no-such-folder" / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report = tmp_path / "demo.json"
    report.write_text(json.dumps(report_data(lengths=(5,))))
    assert main(["report", str(report)]) == 0
    out, err = capsys.readouterr()
    assert f"written: {tmp_path / 'demo.md'}" in out and f"written: {report}" in out
    assert (
        f"warning: GITHUB_STEP_SUMMARY={summary}: the demo report could not be appended there "
        "(No such file or directory)" in err
    )
    assert "cannot write the report" not in err
    # a folder where a report file goes: named, after the other files are written
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    (tmp_path / "demo.md").unlink()
    (tmp_path / "demo.md").mkdir()
    report.write_text(json.dumps(report_data(lengths=(5,))))
    with pytest.raises(SystemExit):
        main(["report", str(report)])
    out, err = capsys.readouterr()
    assert f"written: {report}" in out and json.loads(report.read_text())["schema_version"] == 2
    assert f"{tmp_path / 'demo.md'}: cannot write it (Is a directory)" in err
    assert "Traceback" not in err


def gated_run(tmp_path, holm=True):
    """A run judged against a baseline in which lstm learned length 20 (10/10; now 0/10)."""
    before = report_data(lengths=(5, 10, 20))
    for i, case in enumerate(before["cases"]):
        if (case["cell"], case["length"]) == ("lstm", 20):
            before["cases"][i] = record("lstm", 20, [1.0] * 10)
    path = tmp_path / "baseline.json"
    save_baseline(path, list(run_from_json(before).records.values()), {})
    run = run_from_json(report_data(lengths=(5, 10, 20)))
    run.judge(load_baseline(path), holm=holm)
    return run


@pytest.mark.parametrize("holm", [True, False])
def test_a_gated_report_renders_again_with_what_the_gate_found(tmp_path, holm):
    run = gated_run(tmp_path, holm)
    text = markdown(run, {})
    assert "## Against the baseline" in text and "| lstm   |       20 | regressed" in text
    assert "Frontier moved down: lstm** learned up to length 20" in text
    again = run_from_json(json.loads(json.dumps(to_json(run, {}))))
    assert markdown(again, {}) == text
    assert [c.status for c in again.comparisons] == [c.status for c in run.comparisons]


def test_a_gated_run_of_some_cells_merged_into_a_fuller_report_renders_again_as_gated(tmp_path):
    """A gated run of lstm alone, merged into a report of rnn and lstm: the report, read back,
    compares the three lstm cases the gate compared, not the rnn cases it kept from before."""
    everything = run_from_json(report_data(lengths=(5, 10, 20)))
    gated = run_from_json(report_data(lengths=(5, 10, 20)))
    gated.expected = [key for key in gated.expected if key[0] == "lstm"]
    gated.records = {key: r for key, r in gated.records.items() if key[0] == "lstm"}
    gated.judge(gated_run(tmp_path).baseline)
    shown = gated.completed_by(everything)
    assert len(shown.records) == 6 and [c.cell for c in shown.comparisons] == ["lstm"] * 3
    again = run_from_json(json.loads(json.dumps(to_json(shown, {}))))
    assert [(c.cell, c.length, c.status) for c in again.comparisons] == [
        (c.cell, c.length, c.status) for c in shown.comparisons
    ]
    assert markdown(again, {}) == markdown(shown, {})


@pytest.mark.parametrize(
    ("exitstatus", "unfinished", "written"),
    [(0, None, True), (2, None, False), (1, "never ran", False), (1, "raised", False)],
    ids=[
        "finished",
        "interrupted after every case (the rule under xdist)",
        "a case never ran",
        "a case raised",
    ],
)
def test_a_baseline_is_stored_from_a_run_that_finished_what_it_selected(
    tmp_path, exitstatus, unfinished, written
):
    from types import SimpleNamespace

    from pytest_rnnmemory.runlog import RunLog

    log = RunLog(SimpleNamespace(rootpath=tmp_path, invocation_params=SimpleNamespace(dir=tmp_path)))
    run = run_from_json(report_data(lengths=(5,)))
    if unfinished == "never ran":
        run.expect(("rnn", 10))
    if unfinished == "raised":
        run.add_error(("rnn", 10), "ValueError: broken")
    log.runs[run.name] = run
    log._save_baseline(tmp_path / "b.json", {}, exitstatus)
    assert (tmp_path / "b.json").exists() == written
    assert bool(log.notes) != written and all(
        n.startswith("baseline not written to b.json") for n in log.notes
    )
    if unfinished == "raised":
        assert "1 of its selected cases raised an error: demo rnn-L10;" in log.notes[0]


def test_a_report_gated_without_holms_correction_says_so_and_has_no_holm_column(tmp_path):
    corrected, uncorrected = markdown(gated_run(tmp_path), {}), markdown(gated_run(tmp_path, holm=False), {})
    assert "Holm-adjusted across this suite's cases" in corrected and " Holm |" in corrected
    assert "not adjusted (`--rnn-no-holm`)" in uncorrected and " Holm |" not in uncorrected


def test_a_stored_gate_that_compared_a_case_the_report_lacks_says_where(tmp_path):
    data = to_json(gated_run(tmp_path), {})
    data["gate"]["compared"].append({"cell": "gru", "length": 5})
    with pytest.raises(StoredDataError, match=r"^gate\.compared\[6\]: gru at length 5 is not in cases$"):
        run_from_json(data)


def test_the_json_report_carries_each_cases_failure_pattern():
    data = to_json(run_from_json(report_data(lengths=(100,))), {})
    failures = data["cases"][0]["failures"]
    assert failures == {
        "learned": 0,
        "at_chance": 8,
        "near_threshold": 1,
        "between": 1,
        "diverged": 0,
        "shape": "stuck at chance",
    }


def test_compare_puts_frontiers_counts_and_changed_keys_side_by_side():
    before = report_data(lengths=(5, 100))
    after = json.loads(json.dumps(before))
    after["config"]["train"]["epochs"] = 5
    after["cases"][1] = record("rnn", 100, [1.0] * 10)  # rnn now learns 100
    after["cases"][1]["config_hash"] = before["cases"][1]["config_hash"]
    before["frontier"], after["frontier"] = {"rnn": 5, "lstm": 5}, {"rnn": 100, "lstm": 5}
    text = compare_reports(run_from_json(before), run_from_json(after), ("old.json", "new.json"))
    assert "| train.epochs | 3          | 5          |" in text
    assert "| rnn    | 5          | 100        |" in text
    # 0/10 -> 10/10: one-sided Boschloo p-value of the rise.
    line = next(row for row in text.splitlines() if row.startswith("| rnn    | 100 "))
    assert "✗ 0/10" in line and "✓ 10/10" in line and "| up " in line
    p_value = float(line.rstrip(" |").rsplit("|", 1)[1])
    assert p_value < 1e-4
    unchanged = next(row for row in text.splitlines() if row.startswith("| lstm   | 5 ") and "✓" in row)
    assert "| same" in unchanged


def test_compare_marks_cases_run_under_other_settings_and_cases_in_one_run_only():
    before = report_data(lengths=(5, 100))
    after = report_data(lengths=(5,))
    after["cases"][0]["config_hash"] = "other"
    text = compare_reports(run_from_json(before), run_from_json(after))
    assert "(other settings)" in text
    assert "only in one" in text
    assert ("suite.lengths", [5, 100], [5]) in config_differences(before["config"], after["config"])


def test_compare_says_another_recipe_was_chosen_only_where_both_searched():
    before = report_data(lengths=(5,))
    after = json.loads(json.dumps(before))  # a grid of one, its value written in [train] before
    after["config"]["search"] = {"trials": 4, "scope": "case", "train.lr": [0.1]}
    for case in after["cases"]:
        case["recipe"] = {"train.lr": 0.1}
    assert "another recipe" not in compare_reports(run_from_json(before), run_from_json(after))
    # two searches that chose differently
    before, after = searched_data(lengths=(5,)), searched_data(lengths=(5,))
    for data in (before, after):
        data["config"]["search"] = {"trials": 4, "scope": "case", "model.init": ["torch", "chrono"]}
        for case in data["cases"]:
            case["recipe"] = {"model.init": "torch"}
    after["cases"][1]["recipe"] = {"model.init": "chrono"}
    after["cases"][1]["search"]["chosen"] = 1
    assert "(another recipe chosen)" in compare_reports(run_from_json(before), run_from_json(after))


def test_compare_says_why_a_case_of_both_runs_has_no_counts_in_one():
    """rnn at 100 implied by the frontier, lstm at 10 raised and lstm at 20 unfinished in the second
    run were each '—' and 'only in one', as though that run had not held them; its own report
    says '(✗) implied' and lists the others as missing."""
    before = report_data(lengths=(5, 10, 20, 100))
    after = without_counts(json.loads(json.dumps(before)), ("rnn", 100), ("lstm", 10), ("lstm", 20))
    rows = [
        [part.strip() for part in line.strip("|").split("|")]
        for line in compare_reports(run_from_json(before), run_from_json(after)).splitlines()
        if line.startswith("| rnn") or line.startswith("| lstm")
    ]
    cases = {(row[0], row[1]): row[2:5] for row in rows if len(row) == 6}
    assert cases["rnn", "100"] == ["✗ 0/10", "(✗) implied", "no counts in one"]
    assert cases["lstm", "10"] == ["✓ 9/10", "— raised", "no counts in one"]
    assert cases["lstm", "20"] == ["✗ 0/10", "— did not finish", "no counts in one"]
    # a case the other run does not hold at all is only in one
    fewer = report_data(lengths=(5,))
    lines = compare_reports(run_from_json(before), run_from_json(fewer)).splitlines()
    row = next(line for line in lines if line.startswith("| rnn") and "| 100 " in line)
    assert [part.strip() for part in row.strip("|").split("|")][2:5] == ["✗ 0/10", "—", "only in one"]


def test_a_baseline_given_as_a_report_is_named_as_a_baseline(tmp_path, capsys):
    path = tmp_path / "baseline.json"
    save_baseline(path, list(run_from_json(report_data(lengths=(5,))).records.values()), {})
    with pytest.raises(SystemExit):
        main(["report", str(path)])
    assert "it is a baseline (written by --rnn-save-baseline)" in capsys.readouterr().err


def test_the_commands_out_is_checked_and_a_report_names_no_file_outside_it(tmp_path, capsys):
    report = tmp_path / "a.json"
    report.write_text(json.dumps(report_data(lengths=(5,))))
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(SystemExit):
        main(["report", str(report), "--out", str(tmp_path / "file.txt")])
    assert "file.txt: is a file; give the folder to write the report in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(report), str(report), "--out", str(tmp_path)])
    assert "cannot write the comparison there" in capsys.readouterr().err
    assert main(["compare", str(report), str(report), "--out", str(tmp_path / "new" / "c.md")]) == 0
    assert (tmp_path / "new" / "c.md").is_file()
    data = report_data(lengths=(5,))
    data["suite"] = "../x"  # a report's suite names its files
    report.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        main(["report", str(report), "--out", str(tmp_path / "out")])
    assert 'suite = "../x": must be a name of letters' in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_compare_command_prints_or_writes_the_comparison(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report_data(lengths=(5,))))
    b.write_text(json.dumps(report_data(lengths=(5,))))
    assert main(["compare", str(a), str(b)]) == 0
    assert "# demo (" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.md")]) == 0
    assert "## Frontier" in (tmp_path / "c.md").read_text()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["compare", str(a), str(tmp_path / "bad.json")])


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("a.json", "a.json, a report compared; give a markdown file"),
        ("b.txt", "b.txt, a report compared; give a markdown file"),
        (
            "other.json",
            "the comparison is markdown, and a .json file is where reports and baselines are kept",
        ),
        ("new.json", "the comparison is markdown, and a .json file is where reports and baselines are kept"),
    ],
)
def test_compare_never_writes_its_markdown_over_a_report(tmp_path, capsys, out, message):
    """'compare a.json b.json --out a.json' replaced report a with the markdown, which no command
    could read again."""
    a, b, other = tmp_path / "a.json", tmp_path / "b.txt", tmp_path / "other.json"
    for path in (a, b, other):
        path.write_text(json.dumps(report_data(lengths=(5,))))
    before = {path: path.read_bytes() for path in (a, b, other)}
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(a), str(b), "--out", str(tmp_path / out)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (a, b, other)} == before
    assert not (tmp_path / "new.json").exists()


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ("x", 'environment: expected an object, got "x"'),
        ({"torch": 5}, "environment.torch: expected a string (a version, the device), got 5"),
        (None, "environment: expected an object, got None"),
    ],
)
def test_a_report_whose_environment_was_edited_is_refused_not_written_back_changed(
    tmp_path, capsys, environment, message
):
    """'report' writes X.json again: an environment that was not an object of strings was written
    back as {} (or its numbers as strings) without a word."""
    data = report_data(lengths=(5,))
    data["environment"] = environment
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    held = path.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{path}: not a JSON report" in err and message in err
    assert path.read_bytes() == held and sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]


def test_the_report_command_on_a_file_that_is_no_report_says_where(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(SystemExit):
        main(["report", str(path)])
    err = capsys.readouterr().err
    assert "not a JSON report this version of pytest-rnnmemory can read: suite: missing" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("trials", ["-3", "0", "3,x", "", "10,101"])
def test_calibrate_refuses_trial_counts_out_of_its_range(trials, capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", f"--trials={trials}"])
    assert "must be integers in [1, 100]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search", "--looks"], "not allowed with argument"),
        (["--looks", "--trials=5"], "--trials applies to the power table; --looks has its own"),
    ],
)
def test_calibrate_refuses_options_it_would_ignore(args, message, capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", *args])
    assert message in capsys.readouterr().err


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_replay_on_cuda_without_a_gpu_says_cuda_is_not_here(tmp_path, capsys):
    data = report_data(lengths=(5,))
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        main(["replay", str(path), "--cell", "rnn", "--length", "5", "--trial", "0", "--device", "cuda"])
    assert "--device cuda: CUDA is not available here; use --device cpu" in capsys.readouterr().err


def test_replay_of_a_users_cell_that_raises_names_the_case_and_phase_and_shows_the_users_frames(
    tmp_path, capsys
):
    """The cell raises in the user's code, not the command line: no usage line, and the user's file,
    line and function, as a run of the case would show them."""
    cell = "tests.cells_for_tests:EvalFails"
    data = report_data(lengths=(5,))
    data["config"]["suite"]["cells"] = [cell]
    data["cases"] = [dict(data["cases"][0], cell=cell, scheme="vmap")]
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    assert main(["replay", str(path), "--cell", cell, "--length", "5", "--trial", "0"]) == 1
    err = capsys.readouterr().err
    assert "usage:" not in err
    lines = err.splitlines()
    assert lines[0] == f"cell '{cell}' failed in {EVALUATION} in case demo {cell}-L5, trial 0"
    assert lines[1] == "  the error arose in your code:"
    source, first = inspect.getsourcelines(cells_for_tests.EvalFails.forward)
    line = first + next(i for i, text in enumerate(source) if "raise ValueError" in text)
    assert lines[2].startswith('    File "') and lines[2].endswith(
        f'cells_for_tests.py", line {line}, in forward'
    )
    assert lines[-1] == "  ValueError: this cell cannot be evaluated, on purpose"
    assert "pytest_rnnmemory" not in err and "torch" not in err


@pytest.mark.parametrize("gpus", [0, 1])
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cudax", "--device cudax: must be cpu, cuda or cuda:N"),
        ("cuda:x", "--device cuda:x: must be cpu, cuda or cuda:N"),
        ("cuda:-1", "--device cuda:-1: must be cpu, cuda or cuda:N"),
        ("cuda:", "--device cuda:: must be cpu, cuda or cuda:N"),
        ("cuda:01", "--device cuda:01: must be cpu, cuda or cuda:N"),
    ],
)
def test_replay_refuses_a_device_that_is_not_cuda_or_cuda_n_wherever_it_runs(
    tmp_path, capsys, monkeypatch, gpus, device, message
):
    """'cudax' passed as CUDA: without a GPU it was told CUDA is not here, with one torch raised a
    RuntimeError with its traceback after the report was read."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(report_data(lengths=(5,))))
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(path), "--cell", "rnn", "--length", "5", "--trial", "0", "--device", device])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_replay_on_a_cuda_device_that_is_not_here_says_which_are(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(report_data(lengths=(5,))))
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(path), "--cell", "rnn", "--length", "5", "--trial", "0", "--device", "cuda:2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "--device cuda:2: only 2 CUDA device(s) visible here (cuda:0 to cuda:1)" in err


def test_figures_are_drawn_when_every_trial_of_a_case_diverged(tmp_path):
    pytest.importorskip("matplotlib")
    data = report_data(lengths=(5, 10))
    for case in data["cases"]:
        for trial in case["trials"]:
            trial.update(train_loss=[None, None, None], metric=0.0, success=False, diverged=True)
            trial["val_metric"] = [0.0, 0.0, 0.0]
        case.update(decide(0, len(case["trials"])).to_dict())
        case.update(
            diverged=len(case["trials"]), metric_median=0.0, metric_mean=0.0, metric_max=0.0, rate=0.0
        )
    written = write_reports(run_from_json(data), tmp_path, {})
    assert {p.name for p in written} >= {"demo.png", "demo-curves.png", "demo.md"}


@pytest.mark.parametrize(
    ("train", "said"),
    [
        ({}, "a trial succeeds when its validation accuracy reaches **0.95**"),
        (
            {"stop": "learned", "test_samples": 500},
            "a trial trains until its validation accuracy reaches 0.95 (checked every 100 training "
            "sequences) or its budget ends, and succeeds when its accuracy on 500 fresh test sequences "
            "reaches **0.95**",
        ),
        ({"stop": "learned"}, "succeeds when its accuracy on 1,000 fresh test sequences reaches **0.95**"),
    ],
    ids=["budget", "learned", "learned-test-as-validation"],
)
def test_the_report_says_what_decides_a_trials_success(train, said):
    """With train.stop = "learned" the validation metric only stops training; a fresh test set
    decides success, and the report must not say the validation metric does."""
    data = report_data()
    data["config"]["train"].update(train)
    text = markdown(run_from_json(data), {})
    assert said in text
    assert ("validation accuracy reaches **" in text) == (not train)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (
            {"cell": "lstm", "length": 10, "error": "RuntimeError: CUDA out of memory"},
            "lstm at length 10 raised instead of finishing, so the report has no trial of it to replay: "
            "RuntimeError: CUDA out of memory",
        ),
        (
            {"cell": "lstm", "length": 10},
            "lstm at length 10 did not finish in the reported run (not run, or interrupted), so the "
            "report has no trial of it to replay",
        ),
        (
            {"suite": "demo", "cell": "lstm", "length": 10, "verdict": "learns", "reason": "it learns 20"},
            "lstm at length 10 was not trained: --rnn-frontier implied learns (it learns 20)",
        ),
        ({"cell": "gru", "length": 5}, "the report has no case gru at length 5; it has: --cell rnn"),
    ],
    ids=["raised", "missing", "implied", "unknown"],
)
def test_replay_of_a_case_without_trials_says_why_it_has_none(tmp_path, capsys, missing, message):
    data = report_data(lengths=(5,))
    if "verdict" in missing:
        data["implied"] = [missing]
    elif missing["cell"] == "lstm":
        data["missing"] = [missing]
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        main(
            [
                "replay",
                str(path),
                "--cell",
                missing["cell"],
                "--length",
                str(missing["length"]),
                "--trial",
                "0",
            ]
        )
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def searched_report(recipes):
    """A report of a suite that searches ``train.lr`` over 0.01 and 0.1, its cases' recipes ``recipes``."""
    data = report_data(lengths=(5, 10))
    data["config"]["search"] = {"trials": 4, "scope": "case", "train.lr": [0.01, 0.1]}
    for case, recipe in zip(data["cases"], recipes, strict=True):
        case["recipe"] = recipe
    return data


@pytest.mark.parametrize(
    ("recipes", "message"),
    [
        (
            [{"train.lr": 0.1}, {"train.lr": 0.5}, {"train.lr": 0.01}, {"train.lr": 0.1}],
            'cases[1].recipe (rnn at length 10): {"train.lr": 0.5} is not a recipe of the suite\'s '
            "[search] grid; allowed: one value of each of train.lr (0.01, 0.1)",
        ),
        (
            [{"train.lr": 0.1}, {}, {"train.lr": 0.01}, {"train.lr": 0.1}],
            "cases[1].recipe (rnn at length 10): {} is not a recipe of the suite's [search] grid",
        ),
        (
            [{"train.lr": 0.1}, {"train.lr": 0.1, "model.init": "chrono"}, {}, {}],
            'cases[1].recipe (rnn at length 10): {"train.lr": 0.1, "model.init": "chrono"} is not a recipe',
        ),
    ],
)
def test_a_cases_recipe_must_be_one_of_the_suites_grid(recipes, message):
    with pytest.raises(StoredDataError) as info:
        run_from_json(searched_report(recipes))
    assert message in str(info.value)


def test_a_recipe_without_a_search_is_refused_and_a_grids_recipe_is_read():
    run = run_from_json(searched_report([{"train.lr": 0.1}, {"train.lr": 0.01}] * 2))
    assert run.records["rnn", 10].recipe == {"train.lr": 0.01}
    data = report_data(lengths=(5,))
    data["cases"][0]["recipe"] = {"train.lr": 0.1}
    with pytest.raises(StoredDataError, match=r"allowed: \{\} \(the suite searches nothing\)"):
        run_from_json(data)


def test_a_report_of_a_grid_of_one_recipe_reads_back_as_written():
    """A grid of one recipe is no search, but its recipe is what its cases train: they are written
    with it and read so (the quick profile of parity_che searches train.lr over one value); the
    recipe {} was the suite's [train] lr, which such a case never trains."""
    data = report_data(lengths=(5,))
    data["config"]["search"] = {"trials": 4, "scope": "case", "train.lr": [0.01]}
    for case in data["cases"]:
        case["recipe"] = {"train.lr": 0.01}
    assert run_from_json(data).records["rnn", 5].recipe == {"train.lr": 0.01}
    data["cases"][0]["recipe"] = {}
    with pytest.raises(StoredDataError, match=r"allowed: the grid's only recipe, train.lr \(0.01\)$"):
        run_from_json(data)


def test_replay_of_a_case_whose_recipe_was_edited_names_the_file_the_case_and_the_key(tmp_path, capsys):
    data = report_data(lengths=(5,))
    data["cases"][1]["recipe"] = {"train.foo": 1}
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        main(["replay", str(path), "--cell", "lstm", "--length", "5", "--trial", "0"])
    err = capsys.readouterr().err
    assert f"{path}: not a JSON report" in err
    assert (
        "cases[1].recipe.train.foo = 1 (lstm at length 5): not a searchable key; searchable: train.lr" in err
    )
    assert "Traceback" not in err and "TypeError" not in err


def test_replay_of_a_case_whose_scheme_was_edited_names_the_case_and_the_schemes(tmp_path, capsys):
    """An unknown scheme was reported as a bad train.engine, a key the report does not have, offering
    'auto', which no trial ran with."""
    data = report_data(lengths=(5,))
    data["cases"][0]["scheme"] = "nosuch"
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(path), "--cell", "rnn", "--length", "5", "--trial", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and "train.engine" not in err
    assert f"{path}: rnn at length 5: its scheme 'nosuch' is none of this version's (native, " in err


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("nosuch", "unknown task 'nosuch'; built-in tasks: "),
        ("nosuchmodule_rnnmemory:Task", "task 'nosuchmodule_rnnmemory:Task': cannot import module"),
    ],
)
def test_replay_of_a_report_whose_task_does_not_load_here_names_the_file(tmp_path, capsys, task, message):
    """A report names its task, which may be a user's module not importable here, or edited by hand:
    replay's message named the task but not the report it read it from."""
    data = report_data(lengths=(5,))
    data["config"]["suite"]["task"] = data["task"] = task
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(path), "--cell", "rnn", "--length", "5", "--trial", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"error: {path}: {message}" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["cases"].append(copy.deepcopy(d["cases"][3])),
            "cases[4]: lstm at length 10 again (first at cases[3]); a report holds each case once",
        ),
        (
            lambda d: d.update(missing=[{"cell": "rnn", "length": 5}]),
            "missing[0]: rnn at length 5 again (first at cases[0]); a report holds each case once",
        ),
        (
            lambda d: d.update(
                implied=[{"suite": "demo", "cell": "rnn", "length": 7, "verdict": "learns", "reason": "r"}],
                missing=[{"cell": "rnn", "length": 7, "error": "ValueError: x"}],
            ),
            "missing[0]: rnn at length 7 again (first at implied[0])",
        ),
    ],
)
def test_a_report_that_holds_a_case_twice_is_refused(change, message):
    """A duplicate case was read as one and written back as two: rows twice in the markdown."""
    data = report_data(lengths=(5, 10))
    change(data)
    with pytest.raises(StoredDataError) as info:
        run_from_json(data)
    assert message in str(info.value)


def test_a_reports_p_values_are_the_ones_its_counts_give():
    data = report_data(lengths=(5,))
    data["cases"][0]["p_greater"] = 0.9  # rnn at 5: 9/10, learns
    text = markdown(run_from_json(data), {})
    row = next(line for line in text.splitlines() if line.startswith("| rnn    |        5 | learns"))
    assert [cell.strip() for cell in row.split("|")][6] == f"{decide(9, 10).p_greater:.3g}"


def partial_run(ran=lambda cell, length: cell == "rnn"):
    """A run that finished the cases ``ran`` selects and no other (-x, Ctrl-C), after a full run."""
    before = run_from_json(report_data(lengths=(5, 10, 20)))
    now = run_from_json(report_data(lengths=(5, 10, 20)))
    now.records = {key: r for key, r in now.records.items() if ran(*key)}
    return now, now.completed_by(before)


def frontier_rows(text):
    section = text.split("## Frontier")[1].split("\n## ")[0]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines()]
    return section, [row for row in rows if row and row[0] in ("rnn", "lstm")]


def test_a_cell_no_case_of_which_ran_is_not_run_in_the_terminal_and_kept_in_the_report():
    """The terminal said "lstm none" for a cell that never ran, while the report, which keeps the
    earlier run's verdicts, said lstm 10 under "the largest length each cell learns in this run"."""
    now, shown = partial_run()
    assert terminal_table(now).endswith("frontier (largest length learned): rnn 20, lstm not run")
    assert terminal_table(now, shown).endswith(
        "frontier (largest length learned): rnn 20, lstm not run (the report keeps 10 from an earlier run)"
    )
    text = markdown(shown, {})
    section, rows = frontier_rows(text)
    assert "in this run" not in section
    assert "verdicts of the cases this run did not run again: lstm-L5, lstm-L10, lstm-L20;" in section
    assert rows == [["rnn", "20", "this run"], ["lstm", "10", "an earlier run"]]
    assert to_json(now, {})["frontier"] == {"rnn": 20}  # lstm has no verdict: not "none" (null)
    data = json.loads(json.dumps(to_json(shown, {})))
    assert data["frontier"] == {"rnn": 20, "lstm": 10}
    assert data["kept"] == [{"cell": "lstm", "length": n} for n in (5, 10, 20)]
    assert markdown(run_from_json(data), {}) == text


def test_a_partial_run_at_another_length_lists_the_suites_lengths_ascending():
    """--rnn-length=10 on a report of lengths 5 and 20: its configuration read [5, 20, 10]."""
    now = run_from_json(report_data(lengths=(10,)))
    shown = now.completed_by(run_from_json(report_data(lengths=(5, 20))))
    assert shown.config.suite.lengths == (5, 10, 20)


def test_a_frontier_that_rests_on_kept_verdicts_says_so_in_both():
    now, shown = partial_run(lambda cell, length: length == 5)
    assert terminal_table(now, shown).endswith(
        "rnn 5 (the report: 20, with verdicts kept from an earlier run), "
        "lstm 5 (the report: 10, with verdicts kept from an earlier run)"
    )
    _, rows = frontier_rows(markdown(shown, {}))
    assert rows == [
        ["rnn", "20", "this run, and an earlier run at length 10, 20"],
        ["lstm", "10", "this run, and an earlier run at length 10, 20"],
    ]


def test_a_cell_whose_cases_raised_has_no_verdict_rather_than_no_length():
    now, _ = partial_run()
    now.add_error(("lstm", 5), "RuntimeError: boom")
    assert terminal_table(now).endswith("lstm no verdict, a case raised")
    run = run_from_json(report_data(lengths=(5,)))
    del run.records["lstm", 5]
    run.add_error(("lstm", 5), "RuntimeError: boom")
    _, rows = frontier_rows(markdown(run, {}))
    assert rows == [["rnn", "5"], ["lstm", "no verdict, a case raised"]]


def test_a_kept_case_the_report_has_no_verdict_of_is_refused():
    data = to_json(partial_run()[1], {})
    data["kept"].append({"cell": "gru", "length": 5})
    with pytest.raises(
        StoredDataError, match=r"^kept\[3\]: gru at length 5 is in neither cases nor implied$"
    ):
        run_from_json(data)


def test_a_frontier_moves_only_over_the_cases_the_gate_compared(tmp_path):
    """A gated run of rnn alone, merged into a report whose lstm learns less than the baseline's
    (lstm learned 20 there): lstm was neither run nor compared, so its frontier moved nowhere, in
    the report as in the terminal and the gate."""
    baseline = gated_run(tmp_path).baseline
    everything = run_from_json(report_data(lengths=(5, 10, 20)))
    gated = run_from_json(report_data(lengths=(5, 10, 20)))
    gated.expected = [key for key in gated.expected if key[0] == "rnn"]
    gated.records = {key: r for key, r in gated.records.items() if key[0] == "rnn"}
    gated.judge(baseline)
    shown = gated.completed_by(everything)
    assert shown.frontier_drops() == gated.frontier_drops() == []
    assert not any("FRONTIER DOWN" in line for line in [*shown.gate_lines(), *gated.gate_lines()])
    text = markdown(shown, {})
    assert "Frontier moved down" not in text
    against = text.split("## Against the baseline")[1]
    assert "| lstm   | not compared    | not compared   |" in against
    assert "| rnn    | 20              | 20             |" in against
    again = run_from_json(json.loads(json.dumps(to_json(shown, {}))))
    assert again.frontier_drops() == [] and markdown(again, {}) == text
    # gated as a whole, the same lstm moved down, and all three say so
    whole = gated_run(tmp_path)
    assert whole.frontier_drops() == [("lstm", 20, 10)]
    assert "**Frontier moved down: lstm** learned up to length 20" in markdown(whole, {})
    assert "FRONTIER DOWN: lstm learned up to 20 in the baseline, now up to 10" in whole.gate_lines()


def test_a_case_whose_trials_mostly_diverged_is_told_to_fix_its_training_not_to_train_more_trials():
    """More trials of a recipe that diverges diverge alike: the advice is the remedy, not a count."""
    from pytest_rnnmemory.items import failure_message

    inconclusive = dataclasses.replace(record_of("rnn", 5, 1, n=4), decision=decide(1, 4))
    some = failure_message(dataclasses.replace(inconclusive, diverged=1), 0, "reports/second-look")
    assert "1 trial(s) diverged (NaN or infinite loss): lower train.lr or set train.clip\n" in some
    assert "trials would settle it" in some
    most = failure_message(dataclasses.replace(inconclusive, diverged=2), 0, "reports/second-look")
    assert "2 trial(s) diverged (NaN or infinite loss): lower train.lr or set train.clip, before " in most
    assert "would settle it" not in most


def test_a_record_that_replaces_another_of_its_case_replaces_its_wall_time_too():
    run = run_from_json(report_data(lengths=(5, 10)))
    first = run.records[("rnn", 5)]
    before = run.wall_s
    run.add(dataclasses.replace(first, wall_s=first.wall_s + 2.5))
    assert run.wall_s == pytest.approx(before + 2.5)
    run.add(dataclasses.replace(first, wall_s=0.5))
    assert run.wall_s == pytest.approx(before - first.wall_s + 0.5)


@pytest.mark.parametrize(
    ("trials", "repeated"), [("10,10", "10"), ("10,20,10,20,30", "10, 20"), ("5, 5", "5")]
)
def test_calibrate_refuses_a_trial_count_given_twice(trials, repeated, capsys):
    """'--trials=10,10' computed the row twice and tabled it twice."""
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", f"--trials={trials}"])
    assert exit_.value.code == 2
    assert f"--trials={trials}: {repeated} given more than once; each count once" in capsys.readouterr().err


def test_a_command_whose_reader_stops_reading_ends_quietly(tmp_path):
    """'compare a.json b.json | head' ended on a BrokenPipeError traceback. The comparison is made
    longer than a pipe holds, so that it is still being written when the reader stops."""
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(report_data(lengths=tuple(range(5, 1505)))))
    command = f"{sys.executable} -m pytest_rnnmemory compare {path} {path} | head -c 10 > /dev/null"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["report", "replay", "compare"])
def test_a_report_that_is_not_there_is_said_so_in_one_line(command, tmp_path, capsys):
    missing = tmp_path / "nosuch.json"
    args = {
        "report": [str(missing)],
        "replay": [str(missing), "--cell", "lstm", "--length", "5", "--trial", "0"],
        "compare": [str(missing), str(missing)],
    }[command]
    with pytest.raises(SystemExit) as exit_:
        main([command, *args])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"{missing}: no such file: a JSON report")
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path), str(tmp_path)])
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path}: is a folder, not a JSON report")


def test_compare_reads_a_report_given_through_a_pipe(tmp_path):
    """'compare <(git show HEAD~1:reports/X.json) reports/X.json' was refused as 'no such file': a
    pipe is not a regular file, but it is there and reads as one."""
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(report_data(lengths=(5,))))
    done = subprocess.run(
        [sys.executable, "-m", "pytest_rnnmemory", "compare", "/dev/stdin", str(path)],
        input=path.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"# demo (/dev/stdin) against demo ({path})")


def test_compare_never_writes_its_markdown_through_a_link_to_a_report(tmp_path, capsys):
    """'--out compare.md', a link to a baseline kept as .json, wrote the markdown over the baseline."""
    a, baseline, link = tmp_path / "a.json", tmp_path / "baseline.json", tmp_path / "compare.md"
    for path in (a, baseline):
        path.write_text(json.dumps(report_data(lengths=(5,))))
    link.symlink_to(baseline.name)
    held = baseline.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(a), str(a), "--out", str(link)])
    assert (
        exit_.value.code == 2
        and "a .json file is where reports and baselines are kept" in capsys.readouterr().err
    )
    assert baseline.read_bytes() == held


def test_the_tuning_time_says_how_many_searched_cases_it_sums_where_some_were_not_measured():
    """A partial run merged into a report written before the tuning was timed keeps the other cases
    unmeasured: the sum of the one measured was said as the tuning of all."""
    data = searched_data(lengths=(5, 10))
    searched = [c for c in data["cases"] if c.get("search")]
    for case in searched:
        case["search"]["wall_s"] = 3.0
    text = markdown(run_from_json(data), {})
    assert f"and {3.0 * len(searched):.1f} s of tuning trials choosing their recipes\n" in text
    for case in searched[1:]:
        del case["search"]["wall_s"]
    text = markdown(run_from_json(data), {})
    assert (
        f"and 3.0 s of tuning trials choosing the recipes of 1 of the {len(searched)} searched cases "
        "(the others' was not measured)\n"
    ) in text
