"""The pytest nodes: a suite file collects into one item per case."""

from __future__ import annotations

from typing import Any

import pytest

from .errors import RnnMemoryError, SuiteError
from .settings import SETTINGS, Settings, resolve_device


class CaseFailure(Exception):
    """A case whose verdict is not ``learns``; the message is the whole explanation."""


class SuiteFile(pytest.File):
    """A suite file: one :class:`CaseItem` per (cell, length), or one :class:`BrokenSuite`."""

    def collect(self):
        from .suite import load_suite

        settings: Settings = self.config.stash[SETTINGS]
        try:
            suite = load_suite(self.path, settings.overrides())
        except SuiteError as exc:
            # One failing item instead of a collection error, so other suites still run.
            yield BrokenSuite.from_parent(self, name="suite", problems=exc.problems)
            return
        for case in suite.cases():
            yield CaseItem.from_parent(self, name=case.id, case=case)


class BrokenSuite(pytest.Item):
    """Stands for a suite file that could not be used; fails with one line per problem."""

    def __init__(self, *, problems: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def runtest(self) -> None:
        raise SuiteError(self.problems)

    def repr_failure(self, excinfo, style=None):
        return "\n".join(self.problems)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: invalid suite"


class CaseItem(pytest.Item):
    """One case: train its trials, decide, and pass only if the cell learns."""

    def __init__(self, *, case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.record: dict[str, Any] | None = None
        self.add_marker(pytest.mark.rnnmemory)

    def runtest(self) -> None:
        from .engine import train_case
        from .progress import progress_for
        from .results import case_record
        from .stats import INCONCLUSIVE, LEARNS, decide

        settings: Settings = self.config.stash[SETTINGS]
        suite = self.case.suite
        outcome = train_case(
            self.case.spec(), device=resolve_device(settings.device), progress=progress_for(self)
        )
        k = sum(outcome.successes(suite.success.threshold))
        decision = decide(k, len(outcome.metrics), suite.verdict.p0, suite.verdict.alpha)
        self.record = case_record(self.case, outcome, decision)
        for name in ("verdict", "k", "n", "p_greater", "p_less", "ci_low", "ci_high"):
            self.user_properties.append((f"rnnmemory_{name}", self.record[name]))
        if decision.verdict == LEARNS:
            return
        message = failure_message(self.record)
        if decision.verdict == INCONCLUSIVE and settings.inconclusive == "skip":
            pytest.skip(message)
        raise CaseFailure(message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CaseFailure, RnnMemoryError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.case.suite.name}: {self.case.cell} at length {self.case.length}"


def failure_message(record: dict[str, Any]) -> str:
    """Why a case did not pass, with the numbers that say so."""
    from .stats import trials_to_settle

    k, n = record["k"], record["n"]
    head = (
        f"{record['cell']} {record['verdict']} {record['suite']} at length {record['length']}: "
        f"{k}/{n} trials reached {record['metric']} >= {record['threshold']}"
    )
    lines = [
        head,
        f"  success rate {k / n:.2f}, 95% interval [{record['ci_low']:.2f}, {record['ci_high']:.2f}]",
        f"  p(rate > {record['p0']}) = {record['p_greater']:.3g}, "
        f"p(rate < {record['p0']}) = {record['p_less']:.3g}, alpha = {record['alpha']}",
        f"  median {record['metric']} {record['metric_median']:.3f} "
        f"(chance {record['chance']:.3g}, threshold {record['threshold']})",
    ]
    if record["diverged"]:
        lines.append(f"  {record['diverged']} trial(s) diverged (NaN or infinite loss)")
    if record["verdict"] == "inconclusive":
        more = trials_to_settle(k, n, record["p0"], record["alpha"])
        if more is None:
            lines.append(
                "  the observed rate is too close to p0 for any practical number of trials to settle it"
            )
        else:
            lines.append(
                f"  about {more} trials would settle it if the rate held (--rnn-trials={more}); "
                "or pass --rnn-inconclusive=skip"
            )
    return "\n".join(lines)
