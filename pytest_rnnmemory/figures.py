"""The report's figures (matplotlib, Agg backend): capability, training curves, gradients.

Every figure is drawn from records alone, so that a JSON report renders the
same figures again without training. Without matplotlib, no figure is drawn
and the report says how to get them.
"""

from __future__ import annotations

import math
import random
import statistics
from itertools import pairwise
from pathlib import Path
from typing import Any

from .records import CaseRecord, TrialRecord
from .results import SuiteRun
from .stats import interval_label

#: Lengths shown in the training-curve grid at most (one column each).
CURVE_COLUMNS = 6
#: Single trials drawn in each curve panel besides the median and spread.
SINGLE_TRIALS = 3
#: How far apart the capability figure draws its series at one length, as a share of the length
#: axis's width (less where lengths are closer).
SERIES_GAP = 0.01


def pyplot() -> Any | None:
    """matplotlib's pyplot on the Agg backend, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import pyplot as plt
    except ImportError:
        return None
    return plt


def capability(run: SuiteRun, path: Path) -> bool:
    """Write :func:`capability_figure` to ``path``; ``False`` without matplotlib."""
    return _save(capability_figure(run), path, dpi=110)


def capability_figure(run: SuiteRun) -> Any | None:
    """Success rate against length per cell, and every trial's final metric; ``None`` without matplotlib.

    Top: the success rate with its exact interval (the verdict's, 90% at alpha 0.05) and the p0 line. Bottom:
    each trial's final metric (jittered), with the threshold and the task's
    chance level, so that "stuck at chance" and "just below the threshold" look different.
    """
    plt = pyplot()
    if plt is None:
        return None
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 7.2), sharex=True, gridspec_kw={"height_ratios": [1.1, 1]}
    )
    colours = _colours(run)
    cells = [c for c in run.cells if _points(run, c)]
    for place, cell in enumerate(cells):
        points = _points(run, cell)
        xs = _side_by_side([n for n, _ in points], run.lengths, place, len(cells))
        style = _style(run, cell, colours)
        jitter = random.Random(cell)  # the same dots on every render
        for x, (_, record) in zip(xs, points, strict=True):
            values = [t.metric for t in record.trials]
            spread = [x * (1 + 0.06 * (jitter.random() - 0.5)) for _ in values]
            bottom.scatter(spread, values, s=9, alpha=0.45, color=style["color"], linewidths=0)
        # A length of the cell's without counts (it raised, did not finish, was implied) breaks its
        # lines there: a line through it would draw a rate that was never measured.
        series = [(x, record) for x, (_, record) in zip(xs, points, strict=True)]
        gaps = _side_by_side(_unmeasured(run, cell), run.lengths, place, len(cells))
        series = sorted([*series, *((x, None) for x in gaps)], key=lambda item: item[0])
        xs = [x for x, _ in series]
        rates = [math.nan if r is None else r.rate for _, r in series]
        low = [math.nan if r is None else r.rate - r.decision.ci_low for _, r in series]
        high = [math.nan if r is None else r.decision.ci_high - r.rate for _, r in series]
        top.errorbar(xs, rates, yerr=[low, high], capsize=3, **style)
        medians = [math.nan if r is None else r.metric_median for _, r in series]
        # a median with no neighbour to draw a line to (one length, or one between gaps) is a bar
        alone = [i for i in range(len(series)) if series[i][1] is not None and _alone(series, i)]
        if len(alone) < len(points):
            bottom.plot(xs, medians, color=style["color"], linestyle=style["linestyle"], linewidth=1)
        for i in alone:
            bottom.plot(
                [xs[i]], [medians[i]], color=style["color"], marker="_", markersize=16, markeredgewidth=2
            )
    p0 = run.config.verdict.p0
    top.axhline(p0, color="grey", linestyle="--", linewidth=1, label=f"p0 = {p0}")
    top.set_ylabel("success rate (k/n)")
    top.set_ylim(-0.03, 1.03)
    level = interval_label(run.config.verdict.alpha)
    top.set_title(f"{run.name}: success rate against length ({level} intervals)")
    top.legend(fontsize="small")
    threshold = run.config.success.threshold
    bottom.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    chance = run.chance
    if chance:
        xs = list(chance)
        if len(set(chance.values())) == 1:
            bottom.axhline(chance[xs[0]], color="red", linestyle=":", linewidth=1.2, label="chance")
        else:
            bottom.plot(
                xs, [chance[n] for n in xs], color="red", linestyle=":", linewidth=1.2, label="chance"
            )
    bottom.set_ylabel(f"final {run.config.success.metric} per trial")
    bottom.set_ylim(-0.03, 1.03)
    median = "bar" if len(run.lengths) == 1 else "line"
    bottom.set_title(f"every trial's final metric (dots), median ({median})", fontsize="medium")
    bottom.legend(fontsize="small", loc="lower left")
    _length_axis(bottom, run.lengths)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def curves(run: SuiteRun, path: Path) -> bool:
    """Write :func:`curves_figure` to ``path``; ``False`` if not drawn."""
    return _save(curves_figure(run), path, dpi=100)


def curves_figure(run: SuiteRun) -> Any | None:
    """Per case, validation metric and training loss per epoch over the trials; ``None`` if not drawn.

    Two rows per cell (metric, then loss on a log scale), one column per
    length (at most :data:`CURVE_COLUMNS`, chosen around each cell's frontier).
    Each panel: the median over trials, the interquartile band, the full
    range, and the trials with the lowest, median and highest final metric.
    """
    plt = pyplot()
    if plt is None:
        return None
    lengths = curve_lengths(run)
    cells = [c for c in run.cells if any((c, n) in run.records for n in lengths)]
    if not cells or not lengths:
        return None
    rows, cols = 2 * len(cells), len(lengths)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.3 * cols + 1.2, 1.75 * rows + 0.8), squeeze=False, layout="constrained"
    )
    threshold = run.config.success.threshold
    for i, cell in enumerate(cells):
        for j, length in enumerate(lengths):
            metric_ax, loss_ax = axes[2 * i][j], axes[2 * i + 1][j]
            record = run.records.get((cell, length))
            if record is None:
                metric_ax.set_axis_off()
                loss_ax.set_axis_off()
                why = _no_counts(run, (cell, length))
                if why:  # a case of the run's, not an empty place in the grid
                    metric_ax.set_title(f"{cell}, L={length}: {why}", fontsize="small")
                continue
            trials = record.trials
            _band(metric_ax, [t.val_metric for t in trials], trials)
            metric_ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
            metric_ax.axhline(record.chance, color="red", linestyle=":", linewidth=0.9)
            metric_ax.set_ylim(-0.03, 1.03)
            metric_ax.set_title(f"{cell}, L={length}: {record.k}/{record.n}", fontsize="small")
            _band(loss_ax, [t.train_loss for t in trials], trials, log=True)
            if j == 0:
                metric_ax.set_ylabel(f"{cell}\nval {record.metric}", fontsize="small")
                loss_ax.set_ylabel(f"{cell}\ntrain loss", fontsize="small")
            if i == len(cells) - 1:
                loss_ax.set_xlabel("epoch", fontsize="small")
            for ax in (metric_ax, loss_ax):
                ax.tick_params(labelsize="x-small")
                ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"{run.name}: training curves per case\nmedian, interquartile band, range and "
        f"{SINGLE_TRIALS} single trials;\ndashed: threshold, dotted: chance",
        fontsize="small" if cols < 3 else "medium",
    )
    return fig


def gradient_quartiles(record: CaseRecord) -> tuple[float, float, float] | None:
    """The first quartile, median and third quartile of a case's input gradients over every trial
    measured, zeros too (its median is the table's); ``None`` where the median is exactly 0, which
    has no place on a log axis (a first quartile of 0 reaches the axis's foot)."""
    values = sorted(t.input_gradient for t in record.trials if t.input_gradient is not None)
    if not values or statistics.median(values) <= 0:
        return None
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return quartiles[0], statistics.median(values), quartiles[-1]


def gradients(run: SuiteRun, path: Path) -> bool:
    """Write :func:`gradients_figure` to ``path``; ``False`` if not drawn."""
    return _save(gradients_figure(run), path, dpi=110)


def gradients_figure(run: SuiteRun) -> Any | None:
    """The input-gradient norm at the first step, at initialisation, against length per cell; ``None``
    without matplotlib or without a gradient to plot."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = _colours(run)
    drawn = False
    nan = math.nan
    for cell in run.cells:
        # A median of 0 is a gap in the line, as a length without counts is in the capability
        # figure's: a line over it would draw gradients between its neighbours' that were not there.
        rows = [(n, *(gradient_quartiles(record) or (nan, nan, nan))) for n, record in _points(run, cell)]
        if all(math.isnan(m) for _, _, m, _ in rows):
            continue
        rows = sorted([*rows, *((n, nan, nan, nan) for n in _unmeasured(run, cell))], key=lambda row: row[0])
        style = _style(run, cell, colours)
        xs = [n for n, *_ in rows]
        mid = [m for _, _, m, _ in rows]
        below = [m - q1 for _, q1, m, _ in rows]
        above = [q3 - m for _, _, m, q3 in rows]
        ax.errorbar(xs, mid, yerr=[below, above], capsize=3, **style)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_yscale("log", nonpositive="clip")
    _length_axis(ax, run.lengths)
    ax.set_ylabel("‖∂ loss / ∂ x₀‖ at initialisation")
    ax.set_title(f"{run.name}: gradient reaching the first input (median, interquartile range)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def search(run: SuiteRun, path: Path) -> bool:
    """Write :func:`search_figure` to ``path``; ``False`` if not drawn."""
    return _save(search_figure(run), path, dpi=110, bbox_inches="tight")


def search_figure(run: SuiteRun) -> Any | None:
    """Per cell, a heatmap of every recipe's tuning success rate at every length; the chosen ones
    outlined. ``None`` without matplotlib or without a search."""
    plt = pyplot()
    records = [r for r in run.records_in_order() if r.search is not None]
    if plt is None or not records:
        return None
    cells = [c for c in run.cells if any(r.cell == c for r in records)]
    labels = [f"{entry.index + 1}. {entry.label}" for entry in records[0].search.recipes]
    fig, axes = plt.subplots(
        1,
        len(cells),
        layout="constrained",
        figsize=(1.0 + 2.2 * len(cells) + 0.06 * max(map(len, labels)), 0.9 + 0.32 * len(labels)),
        squeeze=False,
    )
    image = None
    for ax, cell in zip(axes[0], cells, strict=True):
        by_length = {r.length: r.search for r in records if r.cell == cell}
        lengths = sorted(by_length)
        rates = [[math.nan] * len(lengths) for _ in labels]
        for j, length in enumerate(lengths):
            for i, entry in enumerate(by_length[length].recipes):
                if entry.same_as is not None:
                    _repeated(ax, plt, j, i, entry.same_as)
                elif entry.n:
                    rates[i][j] = entry.k / entry.n
                    colour = "black" if rates[i][j] > 0.5 else "white"
                    ax.text(
                        j,
                        i,
                        f"{entry.k}/{entry.n}",
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color=colour,
                    )
                if entry.index == by_length[length].chosen:
                    ax.add_patch(
                        plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.8)
                    )
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], fontsize="small")
        ax.set_yticks(
            range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels), fontsize="x-small"
        )
        ax.set_xlabel("length")
        ax.set_title(cell, fontsize="small")
    fig.colorbar(image, ax=axes[0].tolist(), label="tuning success rate", shrink=0.8)
    fig.suptitle(
        f"{run.name}: recipes on tuning trials (outlined: chosen; blank: eliminated earlier;\n"
        "hatched, = r: the same as recipe r for this cell, which was not trained again)",
        fontsize="small",
    )
    return fig


def _repeated(ax: Any, plt: Any, column: int, row: int, same_as: int) -> None:
    """A heatmap cell hatched and marked ``= r``: its recipe is recipe r for this cell, not measured again."""
    ax.add_patch(
        plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.7", linewidth=0)
    )
    ax.text(
        column,
        row,
        f"= {same_as + 1}",
        ha="center",
        va="center",
        fontsize="x-small",
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
    )


def sequences(run: SuiteRun, path: Path) -> bool:
    """Write :func:`sequences_figure` to ``path``; ``False`` if not drawn."""
    return _save(sequences_figure(run), path, dpi=110)


def sequences_figure(run: SuiteRun) -> Any | None:
    """Median training sequences to learn against length per cell, with 95% intervals; censored above.
    ``None`` without matplotlib or without sequences to learn."""
    plt = pyplot()
    records = [r for r in run.records_in_order() if r.sequences is not None]
    if plt is None or not records:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = _colours(run)
    budget = max(r.budget for r in records)
    for cell in run.cells:
        points = sorted((r.length, r.sequences) for r in records if r.cell == cell)
        if not points:
            continue
        style = _style(run, cell, colours)
        xs = [n for n, _ in points]
        mid = [budget if s.median is None else s.median for _, s in points]
        # no bar where the trials are too few for an interval (the table says so)
        low = [m - (s.low or 0) if s.bounded else 0 for m, (_, s) in zip(mid, points, strict=True)]
        high = [
            (budget if s.high is None else s.high) - m if s.bounded else 0
            for m, (_, s) in zip(mid, points, strict=True)
        ]
        ax.errorbar(xs, mid, yerr=[low, high], capsize=3, **style)
        censored = [(n, budget) for n, s in points if s.median is None]
        if censored:
            ax.scatter(*zip(*censored, strict=True), marker="^", color=style["color"], zorder=3)
    ax.axhline(
        budget, color="grey", linestyle="--", linewidth=1, label=f"budget {budget:,} (▲: more than it)"
    )
    _length_axis(ax, run.lengths)
    ax.set_ylabel("training sequences to learn (median)")
    ax.set_title(f"{run.name}: sequences to learn (median, 95% interval)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _save(fig: Any | None, path: Path, **options: Any) -> bool:
    """Write ``fig`` to ``path`` and close it; ``False`` where there is no figure."""
    if fig is None:
        return False
    try:
        fig.savefig(path, **options)
    finally:  # a figure that could not be written is closed too: pyplot keeps every open one
        pyplot().close(fig)
    return True


def curve_lengths(run: SuiteRun, limit: int = CURVE_COLUMNS) -> list[int]:
    """The lengths whose curves are drawn: every length, where there are at most ``limit``.

    Else each cell's frontier (for a cell that learned no length, the shortest), then the
    length after each frontier while places are left, then lengths spread evenly over the
    rest. Every frontier is drawn, even where they alone are more than ``limit``.
    """
    lengths = run.lengths
    if len(lengths) <= limit:
        return lengths
    frontiers, after = [], []
    for cell in run.cells:
        if cell in run.controls:
            continue
        frontier = run.frontier(cell)
        if frontier is None:
            frontiers.append(lengths[0])
            continue
        frontiers.append(frontier)
        after += [n for n in lengths if n > frontier][:1]
    chosen = list(dict.fromkeys(frontiers))
    for n in after:
        if len(chosen) < limit and n not in chosen:
            chosen.append(n)
    chosen += _even([n for n in lengths if n not in chosen], limit - len(chosen))
    return sorted(chosen)


def _even(lengths: list[int], count: int) -> list[int]:
    """``count`` lengths spread evenly over ``lengths``, ends included (none where ``count`` < 1)."""
    if count < 1:
        return []
    if count >= len(lengths):
        return list(lengths)
    if count == 1:
        return [lengths[len(lengths) // 2]]
    step = (len(lengths) - 1) / (count - 1)
    return [lengths[round(i * step)] for i in range(count)]


def _band(
    ax: Any, rows: list[tuple[float | None, ...]], trials: tuple[TrialRecord, ...], *, log: bool = False
) -> None:
    """Median, interquartile band and range over trials per epoch, plus a few single trials."""
    epochs = max((len(r) for r in rows), default=0)
    if epochs == 0:
        return
    xs, low, q1, mid, q3, high = [], [], [], [], [], []
    for e in range(epochs):
        values = sorted(r[e] for r in rows if e < len(r) and r[e] is not None and (not log or r[e] > 0))
        if not values:
            continue
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        xs.append(e + 1)
        low.append(values[0])
        q1.append(quartiles[0])
        mid.append(statistics.median(values))
        q3.append(quartiles[2])
        high.append(values[-1])
    ax.fill_between(xs, low, high, color="tab:blue", alpha=0.12, linewidth=0)
    ax.fill_between(xs, q1, q3, color="tab:blue", alpha=0.3, linewidth=0)
    ax.plot(xs, mid, color="tab:blue", linewidth=1.5)
    ranked = sorted(range(len(trials)), key=lambda i: trials[i].metric)
    picks = sorted({ranked[0], ranked[len(ranked) // 2], ranked[-1]})[:SINGLE_TRIALS]
    for i in picks:
        points = [(e + 1, v) for e, v in enumerate(rows[i]) if v is not None and (not log or v > 0)]
        if points:
            ax.plot(
                [e for e, _ in points], [v for _, v in points], color="tab:orange", linewidth=0.7, alpha=0.8
            )
    if log and high and max(high) >= 10 * min(low):
        # Within one decade a log axis has no labelled tick: stay linear there.
        from matplotlib.ticker import NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())


def _alone(series: list[tuple[float, CaseRecord | None]], i: int) -> bool:
    """Whether the ``i``-th point of ``series`` has no point with counts on either side of it."""
    return all(series[j][1] is None for j in (i - 1, i + 1) if 0 <= j < len(series))


def _no_counts(run: SuiteRun, key: tuple[str, int]) -> str:
    """Why a case of ``run`` has no counts, with the verdict an implied one has; empty where it is
    no case of it."""
    why = run.without_counts(key)
    return f"{run.implied[key].verdict.value}, implied" if why == "implied" else why


def _unmeasured(run: SuiteRun, cell: str) -> list[int]:
    """The lengths of ``cell``'s cases without counts that lie between two with counts."""
    measured = [n for n, _ in _points(run, cell)]
    return sorted(
        n
        for c, n in run.expected
        if c == cell and (c, n) not in run.records and measured[0] < n < measured[-1]
    )


def _points(run: SuiteRun, cell: str) -> list[tuple[int, CaseRecord]]:
    return sorted(((n, r) for (c, n), r in run.records.items() if c == cell), key=lambda item: item[0])


def _colours(run: SuiteRun) -> dict[str, str]:
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
    cells = [c for c in run.cells if c not in run.controls]
    colours = {c: palette[i % len(palette)] for i, c in enumerate(cells)}
    colours.update({c: "tab:grey" if i == 0 else "black" for i, c in enumerate(run.controls)})
    return colours


def _style(run: SuiteRun, cell: str, colours: dict[str, str]) -> dict[str, Any]:
    if cell in run.controls:
        return {"linestyle": ":", "marker": "x", "label": f"{cell} (control)", "color": colours[cell]}
    return {"linestyle": "-", "marker": "o", "label": cell, "color": colours[cell]}


def _length_axis(ax: Any, lengths: list[int]) -> None:
    """Length on x, ticks at readable lengths: log-scaled when lengths span a factor of ten or
    more, and a decade wide around a single length, where a trial's jitter looks as small as
    beside other lengths."""
    if _logarithmic(lengths):
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(_spread(lengths))
    if len(set(lengths)) == 1:
        ax.set_xlim(lengths[0] / math.sqrt(10), lengths[0] * math.sqrt(10))
    ax.set_xlabel("length")


def _side_by_side(xs: list[int], lengths: list[int], place: int, count: int) -> list[float]:
    """``xs`` of the ``place``-th of ``count`` series, moved to its own side of each length on the
    length axis's scale, so that series at the same values do not hide one another: series lie a
    hundredth of the axis's width apart, closer where lengths are, the group within a quarter of
    the narrowest step between lengths on either side."""
    log = _logarithmic(lengths)
    scale = math.log10 if log else float
    ticks = sorted({scale(n) for n in lengths})
    width = ticks[-1] - ticks[0] or 1.0  # the decade around a single length
    narrowest = min((b - a for a, b in pairwise(ticks)), default=width)
    move = min(SERIES_GAP * width, narrowest / 2 / count) * (place - (count - 1) / 2)
    return [10 ** (math.log10(x) + move) if log else x + move for x in xs]


def _logarithmic(lengths: list[int]) -> bool:
    """Whether the length axis is log-scaled: lengths span a factor of ten or more, or are one."""
    return bool(lengths) and (len(set(lengths)) == 1 or max(lengths) / max(min(lengths), 1) >= 10)


def _spread(lengths: list[int]) -> list[int]:
    """Tick positions from ``lengths`` that stay readable: on a log axis, at least 1.4x apart."""
    ticks: list[int] = []
    for length in sorted(lengths):
        if not ticks or length / ticks[-1] >= 1.4 or len(lengths) <= 8:
            ticks.append(length)
    return ticks
