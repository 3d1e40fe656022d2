"""The record of one case's result: plain data that travels between processes and into reports."""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .stats import Decision, decide

if TYPE_CHECKING:
    from .engine import CaseOutcome
    from .suite import Case

#: A case's result as plain JSON-ready data (see ``case_record`` for its keys).
Record = dict[str, Any]


def case_record(case: Case, outcome: CaseOutcome, decision: Decision) -> Record:
    """Everything the report and the gate need to know about one finished case."""
    suite = case.suite
    successes = outcome.successes(suite.success.threshold)
    metrics = outcome.metrics
    return {
        "suite": suite.name,
        "cell": case.cell,
        "control": case.control,
        "length": case.length,
        "config_hash": case.config_hash(),
        **decision.to_dict(),
        "rate": decision.rate,
        "metric": suite.success.metric,
        "threshold": suite.success.threshold,
        "chance": suite.task.chance(case.length),
        "metric_median": statistics.median(metrics),
        "metric_mean": statistics.fmean(metrics),
        "metric_max": max(metrics),
        "diverged": sum(outcome.diverged),
        "scheme": outcome.scheme,
        "device": outcome.device,
        "wall_s": round(outcome.wall_s, 3),
        "input_gradient": statistics.median(outcome.input_gradient) if outcome.input_gradient else None,
        "generalisation": [
            _generalisation(length, values, outcome.diverged, decision, suite.success.threshold)
            for length, values in sorted(outcome.eval_metrics.items())
        ],
        "trials": [
            {
                "index": i,
                "seed": seed,
                "metric": metrics[i],
                "success": successes[i],
                "diverged": outcome.diverged[i],
                "train_loss": outcome.train_loss[i],
                "val_metric": outcome.val_metric[i],
                "input_gradient": outcome.input_gradient[i] if outcome.input_gradient else None,
                "eval_metrics": [values[i] for _, values in sorted(outcome.eval_metrics.items())],
            }
            for i, seed in enumerate(case.trial_seeds()[: len(metrics)])
        ],
    }


def _generalisation(
    length: int, metrics: list[float], diverged: list[bool], trained: Decision, threshold: float
) -> Record:
    """The trained trials' success at another length, judged as the case is at its own."""
    k = sum((m >= threshold) and not d for m, d in zip(metrics, diverged, strict=True))
    decision = decide(k, len(metrics), trained.p0, trained.alpha)
    return {
        "length": length,
        **decision.to_dict(),
        "rate": decision.rate,
        "metric_median": statistics.median(metrics),
        "metric_mean": statistics.fmean(metrics),
    }


def record_decision(record: Record) -> Decision:
    """The verdict stored in a record, recomputed from its counts."""
    return decide(record["k"], record["n"], record["p0"], record["alpha"])


def environment(device: str) -> dict[str, str]:
    """Versions and device, for the report's header."""
    import numpy
    import scipy
    import torch

    return {
        "pytest_rnnmemory": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": device,
    }


def suite_meta(suite, root: Path) -> dict:
    """What a report needs to know of a suite, as plain data that can travel with a record."""
    return {
        "name": suite.name,
        "description": suite.meta.description,
        "path": display_path(suite.path, root),
        "task": suite.meta.task,
        "profile": suite.profile,
        "config": suite.resolved,
    }


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside, else its name."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def bisection_order(lengths: list[int]) -> list[int]:
    """Sorted ``lengths`` in the order a bisection visits them: the middle first, then each half's."""
    order: list[int] = []
    spans = [(0, len(lengths) - 1)]
    while spans:
        low, high = spans.pop(0)
        if low > high:
            continue
        middle = (low + high) // 2
        order.append(lengths[middle])
        spans += [(middle + 1, high), (low, middle - 1)]
    return order


def implied_verdict(records: list[Record], length: int) -> tuple[str, str] | None:
    """The verdict that results at other lengths imply at ``length`` when success falls with length.

    A cell that learns a longer length learns this one; one that fails a shorter
    length fails this one. Returns (verdict, reason) or ``None``.
    """
    learned = [r["length"] for r in records if r["verdict"] == "learns" and r["length"] > length]
    if learned:
        return "learns", f"it learns length {min(learned)}, which is longer"
    failed = [r["length"] for r in records if r["verdict"] == "fails" and r["length"] < length]
    if failed:
        return "fails", f"it fails length {max(failed)}, which is shorter"
    return None


@dataclass
class SuiteRun:
    """One suite's results in one pytest run: what was asked for and what came back."""

    name: str
    description: str
    path: str
    task: str
    profile: str | None
    config: dict[str, Any]
    #: The (cell, length) cases selected for this run, in order.
    expected: list[tuple[str, int]]
    records: dict[tuple[str, int], Record] = field(default_factory=dict)
    wall_s: float = 0.0
    #: Cases that ``--rnn-frontier`` did not train, with the verdict the others imply.
    implied: dict[tuple[str, int], Record] = field(default_factory=dict)
    #: Filled by :meth:`judge` when the run has a baseline.
    comparisons: list = field(default_factory=list)
    baseline: Any = None

    @property
    def cells(self) -> list[str]:
        """The cells of this run in the suite's order (results may arrive in any order)."""
        present = {c for c, _ in self.expected}
        suite = self.config["suite"]
        ordered = [c for c in [*suite["cells"], *suite.get("controls", [])] if c in present]
        return ordered + sorted(present - set(ordered))

    @property
    def ordered_cases(self) -> list[tuple[str, int]]:
        """The selected cases, cell by cell in the suite's order, lengths ascending."""
        rank = {c: i for i, c in enumerate(self.cells)}
        return sorted(self.expected, key=lambda case: (rank[case[0]], case[1]))

    @property
    def lengths(self) -> list[int]:
        return sorted({n for _, n in self.expected})

    @property
    def missing(self) -> list[tuple[str, int]]:
        return [c for c in self.ordered_cases if c not in self.records and c not in self.implied]

    def judge(self, baseline: Any, *, holm: bool = True) -> None:
        """Compare this run's records with ``baseline`` (a :class:`.gate.Baseline`)."""
        from .gate import compare

        verdict = self.config["verdict"]
        records = [self.records[c] for c in self.ordered_cases if c in self.records]
        self.baseline = baseline
        self.comparisons = compare(
            records, baseline, verdict["alpha"], test=verdict["regression_test"], use_holm=holm
        )

    def frontier_drops(self) -> list[tuple[str, int | None, int | None]]:
        """Cells whose frontier moved down since the baseline: (cell, before, now)."""
        if self.baseline is None:
            return []
        drops = []
        for cell in self.cells:
            before, now = self.baseline.frontier(self.name, cell), self.frontier(cell)
            if before is not None and (now is None or now < before):
                drops.append((cell, before, now))
        return drops

    def gate_lines(self) -> list[str]:
        """What the gate found, one line each, worst first (empty without a baseline)."""
        if self.baseline is None:
            return []
        from .gate import IMPROVED, UNCHANGED

        lines = [
            f"FRONTIER DOWN: {cell} learned up to {before} in the baseline, now "
            f"{'no length' if now is None else f'up to {now}'}"
            for cell, before, now in self.frontier_drops()
        ]
        for c in self.comparisons:
            if c.status not in (UNCHANGED, IMPROVED):
                lines.append(f"{c.status.upper()}: {c.describe(self.baseline)}")
        lines += [f"improved: {c.describe(self.baseline)}" for c in self.comparisons if c.status == IMPROVED]
        unchanged = sum(c.status == UNCHANGED for c in self.comparisons)
        lines.append(
            f"baseline {self.baseline.path.name} ({self.baseline.created}): {unchanged} case(s) unchanged"
        )
        return lines

    @property
    def controls(self) -> list[str]:
        """The controls of this run (they have columns, not frontiers)."""
        return [c for c in self.cells if c in self.config["suite"].get("controls", [])]

    def leaky_controls(self) -> dict[str, list[int]]:
        """Controls that learn, with the lengths: the criterion is reachable there without memory."""
        leaky: dict[str, list[int]] = {}
        for (cell, length), r in sorted(self.records.items()):
            if cell in self.controls and r["verdict"] == "learns":
                leaky.setdefault(cell, []).append(length)
        return leaky

    @property
    def chance(self) -> dict[int, float]:
        """The task's chance level at each length that has a result, by length ascending."""
        return {n: r["chance"] for (_, n), r in sorted(self.records.items(), key=lambda item: item[0][1])}

    def frontier(self, cell: str) -> int | None:
        """The largest length that ``cell`` learns in this run (``None``: it learns none)."""
        verdicts = [*self.records.items(), *self.implied.items()]
        learned = [n for (c, n), r in verdicts if c == cell and r["verdict"] == "learns"]
        return max(learned) if learned else None
