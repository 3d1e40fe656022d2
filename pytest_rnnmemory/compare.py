"""Two JSON reports side by side: configuration, frontiers and every case's counts."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from .gate import drop_pvalue, rise_pvalue
from .report import MARKS, MISSING

Report = dict[str, Any]


def compare_reports(a: Report, b: Report, names: tuple[str, str] = ("A", "B"), test: str = "boschloo") -> str:
    """A markdown comparison of reports ``a`` and ``b``.

    Each case present in both gets the one-sided exact ``test`` of the direction
    its rate moved (no correction for the number of cases: this describes, the
    baseline gate decides). Cases run under other settings are marked, since
    their counts do not measure the same thing.
    """
    first, second = names
    lines = [f"# {a['suite']} ({first}) against {b['suite']} ({second})", ""]
    if a["task"] != b["task"]:
        lines += [f"> The runs test different tasks: `{a['task']}` and `{b['task']}`.", ""]
    differences = config_differences(a["config"], b["config"])
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
    cells = _union(a["config"]["suite"]["cells"], b["config"]["suite"]["cells"])
    frontier_a, frontier_b = a.get("frontier", {}), b.get("frontier", {})
    lines += [
        "## Frontier",
        "",
        "The largest length each cell learns.",
        "",
        tabulate(
            [[c, _frontier(frontier_a, c), _frontier(frontier_b, c)] for c in cells],
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


def _case_rows(a: Report, b: Report, test: str) -> list[list[str]]:
    cases_a = {(c["cell"], c["length"]): c for c in a["cases"]}
    cases_b = {(c["cell"], c["length"]): c for c in b["cases"]}
    order = _union([*cases_a], [*cases_b])
    rank = {c: i for i, c in enumerate(_union([c for c, _ in cases_a], [c for c, _ in cases_b]))}
    rows = []
    for cell, length in sorted(order, key=lambda case: (rank[case[0]], case[1])):
        x, y = cases_a.get((cell, length)), cases_b.get((cell, length))
        if x is None or y is None:
            rows.append([cell, length, _count(x), _count(y), "only in one", ""])
            continue
        change, p = _change(x, y, test)
        if x.get("config_hash") != y.get("config_hash"):
            change += " (other settings)"
        rows.append([cell, length, _count(x), _count(y), change, p])
    return rows


def _change(x: dict[str, Any], y: dict[str, Any], test: str) -> tuple[str, str]:
    """Which way the rate moved from ``x`` to ``y``, and the one-sided p-value of that direction."""
    rate_x, rate_y = x["k"] / x["n"], y["k"] / y["n"]
    if rate_y < rate_x:
        return "down", f"{drop_pvalue(y['k'], y['n'], x['k'], x['n'], test):.3g}"
    if rate_y > rate_x:
        return "up", f"{rise_pvalue(y['k'], y['n'], x['k'], x['n'], test):.3g}"
    return "same", ""


def _count(record: dict[str, Any] | None) -> str:
    if record is None:
        return MISSING
    return f"{MARKS[record['verdict']]} {record['k']}/{record['n']}"


def _frontier(frontiers: dict[str, int | None], cell: str) -> str:
    if cell not in frontiers:
        return MISSING
    value = frontiers[cell]
    return "none" if value is None else str(value)


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
