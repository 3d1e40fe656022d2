"""Two JSON reports side by side: configuration, frontiers and every case's counts."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from .gate import another_recipe, drop_pvalue, rise_pvalue
from .records import CaseRecord
from .report import MISSING
from .results import SuiteRun
from .stats import MARKS


def compare_reports(
    a: SuiteRun, b: SuiteRun, names: tuple[str, str] = ("A", "B"), test: str = "boschloo"
) -> str:
    """A markdown comparison of the runs of reports ``a`` and ``b``.

    Each case present in both gets the one-sided exact ``test`` of the direction
    its rate moved (no correction for the number of cases: this describes, the
    baseline gate decides). Cases run under other settings are marked, since
    their counts do not measure the same thing.
    """
    first, second = names
    lines = [f"# {a.name} ({first}) against {b.name} ({second})", ""]
    if a.meta.task != b.meta.task:
        lines += [f"> The runs test different tasks: `{a.meta.task}` and `{b.meta.task}`.", ""]
    differences = config_differences(a.config.to_json(), b.config.to_json())
    lines += ["## Configuration", ""]
    if differences:
        lines += [
            tabulate(
                [[key, _text(x), _text(y)] for key, x, y in differences],
                headers=["key", first, second],
                tablefmt="github",
                disable_numparse=True,
            ),
            "",
        ]
    else:
        lines += ["Identical.", ""]
    cells = _union(list(a.config.suite.cells), list(b.config.suite.cells))
    lines += [
        "## Frontier",
        "",
        "The largest length each cell learns.",
        "",
        tabulate(
            [[c, _frontier(a, c), _frontier(b, c)] for c in cells],
            headers=["cell", first, second],
            tablefmt="github",
            disable_numparse=True,
        ),
        "",
        "## Cases",
        "",
        f"✓ learns, ✗ fails, ? inconclusive. p: one-sided exact {test} test of the change's direction.",
        "",
        tabulate(
            _case_rows(a, b, test),
            headers=["cell", "length", first, second, "change", "p"],
            tablefmt="github",
            disable_numparse=True,
        ),
        "",
    ]
    return "\n".join(lines)


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(section.key, value in a, value in b)`` for every key whose values differ."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    return [
        (k, flat_a.get(k, MISSING), flat_b.get(k, MISSING))
        for k in sorted(flat_a.keys() | flat_b.keys())
        if flat_a.get(k, MISSING) != flat_b.get(k, MISSING)
    ]


def _case_rows(a: SuiteRun, b: SuiteRun, test: str) -> list[list[str]]:
    order = _union(list(a.records), list(b.records))
    rank = {c: i for i, c in enumerate(_union([c for c, _ in a.records], [c for c, _ in b.records]))}
    rows = []
    for key in sorted(order, key=lambda case: (rank[case[0]], case[1])):
        x, y = a.records.get(key), b.records.get(key)
        counts = [*key, _count(x, a, key), _count(y, b, key)]
        if x is None or y is None:
            # a case the other run holds without counts (implied, raised, not finished) is in both
            held = key in (a if x is None else b).expected
            rows.append([*counts, "no counts in one" if held else "only in one", ""])
            continue
        change, p = _change(x, y, test)
        if x.config_hash != y.config_hash:
            change += " (other settings)"
        elif another_recipe(x.recipe, y.recipe):
            change += " (another recipe chosen)"
        rows.append([*counts, change, p])
    return rows


def _change(x: CaseRecord, y: CaseRecord, test: str) -> tuple[str, str]:
    """Which way the rate moved from ``x`` to ``y``, and the one-sided p-value of that direction."""
    if y.rate < x.rate:
        return "down", f"{drop_pvalue(y.k, y.n, x.k, x.n, test):.3g}"
    if y.rate > x.rate:
        return "up", f"{rise_pvalue(y.k, y.n, x.k, x.n, test):.3g}"
    return "same", ""


def _count(record: CaseRecord | None, run: SuiteRun, key: tuple[str, int]) -> str:
    """A case's counts in ``run``, or why it has none there: as the run's own report says."""
    if record is not None:
        return f"{MARKS[record.verdict]} {record.k}/{record.n}"
    why = run.without_counts(key)
    if why == "implied":
        return f"({MARKS[run.implied[key].verdict]}) implied"
    return f"{MISSING} {why}" if why else MISSING


def _frontier(run: SuiteRun, cell: str) -> str:
    if cell not in run.config.suite.cells:
        return MISSING
    return run.frontier_text(cell)


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, values in config.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "[]"
    return str(value)


def _union(first: list, second: list) -> list:
    """The items of both lists, in first-seen order."""
    return list(dict.fromkeys([*first, *second]))
