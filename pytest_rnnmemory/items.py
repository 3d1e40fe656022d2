"""The pytest nodes: a suite file collects into one item per case."""

from __future__ import annotations

from typing import Any

import pytest

from .errors import RnnMemoryError, SuiteError
from .settings import SETTINGS, Settings, resolve_device


class CaseFailure(Exception):
    """A case whose verdict is not ``learns``; the message is the whole explanation."""


class _OwnFailures(pytest.Item):
    """An item whose expected failures are explained by their message alone, without a traceback."""

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CaseFailure, RnnMemoryError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class SuiteFile(pytest.File):
    """A suite file: one :class:`CaseItem` per (cell, length), or one :class:`BrokenSuite`."""

    def collect(self):
        from .suite import load_suite

        settings: Settings = self.config.stash[SETTINGS]
        try:
            suite = load_suite(self.path, settings.overrides(), label=self.nodeid.split("::")[0])
        except SuiteError as exc:
            # One failing item instead of a collection error, so other suites still run.
            yield BrokenSuite.from_parent(self, name="suite", problems=exc.problems)
            return
        # A gated suite stays on one pytest-xdist worker (--dist loadgroup): its gate needs every case.
        xdist = self.config.pluginmanager.hasplugin("xdist")
        group = pytest.mark.xdist_group(suite.name) if settings.baseline and xdist else None
        for case in suite.cases():
            item = CaseItem.from_parent(self, name=case.id, case=case)
            claim = suite.claims.get(case.cell)
            if claim is not None and claim.expects(case.length) == "fails":
                reason = f"the suite claims {case.cell} {claim.describe()}"
                item.add_marker(pytest.mark.xfail(reason=reason, strict=suite.strict))
            if group is not None:
                item.add_marker(group)
            yield item
        if settings.baseline is not None:
            gate = GateItem.from_parent(self, name="gate", suite=suite)
            if group is not None:
                gate.add_marker(group)
            yield gate


class BrokenSuite(_OwnFailures):
    """Stands for a suite file that could not be used; fails with one line per problem."""

    def __init__(self, *, problems: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def runtest(self) -> None:
        raise SuiteError(self.problems)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: invalid suite"


class CaseItem(_OwnFailures):
    """One case: train its trials, decide, and pass only if the cell learns."""

    def __init__(self, *, case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.record: dict[str, Any] | None = None
        self.add_marker(pytest.mark.rnnmemory)

    def runtest(self) -> None:
        from .results import record_decision
        from .stats import INCONCLUSIVE, LEARNS

        settings: Settings = self.config.stash[SETTINGS]
        suite = self.case.suite
        if settings.frontier and not self.case.control:
            self._skip_if_implied()
        cache, key = self._cache_key(settings)
        self.record = self._stored_result(settings, cache, key) or self._train(settings, cache, key)
        decision = record_decision(self.record)
        for name in ("verdict", "k", "n", "p_greater", "p_less", "ci_low", "ci_high"):
            self.user_properties.append((f"rnnmemory_{name}", self.record[name]))
        if self.case.control:
            if decision.verdict == LEARNS:
                raise CaseFailure(
                    f"{failure_message(self.record)}\n  {self.case.cell} is a control that remembers "
                    "nothing: the success criterion is reachable without memory at this length"
                )
            return  # a control that does not learn is what a sound suite shows
        if decision.verdict == LEARNS:
            return  # passes; where the suite claims failure, the xfail marker turns it into XPASS
        message = failure_message(self.record)
        claim = suite.claims.get(self.case.cell)
        expected = claim.expects(self.case.length) if claim else None
        if expected == "learns":
            raise CaseFailure(f"{message}\n  the suite claims {self.case.cell} {claim.describe()}")
        if expected is None and settings.baseline is not None:
            return  # with a baseline the gate judges this case, against its stored counts
        if expected is None and decision.verdict == INCONCLUSIVE and settings.inconclusive == "skip":
            pytest.skip(message)
        raise CaseFailure(message)

    def _skip_if_implied(self) -> None:
        """Under ``--rnn-frontier``: skip a length whose verdict this cell's other results imply."""
        from .plugin import RUN_LOG
        from .results import implied_verdict, suite_meta

        run = self.config.stash[RUN_LOG].runs.get(self.case.suite.name)
        records = [] if run is None else [r for (c, _), r in run.records.items() if c == self.case.cell]
        implied = implied_verdict(records, self.case.length)
        if implied is None:
            return
        verdict, reason = implied
        self.implied = {
            "suite": self.case.suite.name,
            "cell": self.case.cell,
            "length": self.case.length,
            "verdict": verdict,
            "reason": reason,
            "suite_meta": suite_meta(self.case.suite, self.config.rootpath),
        }
        pytest.skip(f"--rnn-frontier: {verdict} implied, not trained: {reason}")

    def _cache_key(self, settings: Settings) -> tuple[object, str] | tuple[None, None]:
        """Where this case's result is stored, and its key (``None, None``: no store)."""
        from .cache import ResultCache, case_key

        folder = settings.cache_dir
        if folder is None:
            if not hasattr(self.config, "cache"):
                return None, None  # pytest's cache is switched off (-p no:cacheprovider)
            folder = self.config.cache.mkdir("rnnmemory")
        device_type = resolve_device(settings.device).split(":")[0]
        return ResultCache(folder), case_key(self.case.settings(), device_type)

    def _stored_result(self, settings: Settings, cache, key: str | None) -> dict[str, Any] | None:
        """The result of an earlier run of exactly this case, unless ``--rnn-rerun``."""
        if settings.rerun or cache is None:
            return None
        record = cache.get(key)
        return None if record is None else {**record, "cached": True}

    def _train(self, settings: Settings, cache, key: str | None) -> dict[str, Any]:
        """Train the case's trials, decide, and store the result at once."""
        from .progress import progress_for
        from .results import case_record, suite_meta
        from .sequential import train_in_stages
        from .stats import decide

        suite = self.case.suite
        verdict = suite.verdict
        outcome = train_in_stages(
            self.case.spec(),
            verdict.stage,
            verdict.p0,
            verdict.alpha,
            device=resolve_device(settings.device),
            progress=progress_for(self),
        )
        k = sum(outcome.successes(suite.success.threshold))
        decision = decide(k, len(outcome.metrics), verdict.p0, verdict.alpha)
        record = case_record(self.case, outcome, decision)
        record["trials_planned"] = verdict.trials
        record["suite_meta"] = suite_meta(suite, self.config.rootpath)
        record["cached"] = False
        if cache is not None:
            cache.put(key, record)
        return record

    def reportinfo(self):
        return self.path, None, f"{self.case.suite.name}: {self.case.cell} at length {self.case.length}"


class GateItem(_OwnFailures):
    """The baseline gate of one suite: runs after its cases, fails if any regressed.

    Holm's correction needs the p-values of every compared case, so the
    decision is this item's, not the cases'.
    """

    def __init__(self, *, suite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.add_marker(pytest.mark.rnnmemory)

    def runtest(self) -> None:
        from .gate import IMPROVED, UNCHANGED, load_baseline
        from .plugin import RUN_LOG

        settings: Settings = self.config.stash[SETTINGS]
        run = self.config.stash[RUN_LOG].runs.get(self.suite.name)
        if run is None:
            raise CaseFailure(f"{self.suite.name}: no case of this suite ran, so there is nothing to compare")
        absent = [f"{c}-L{n}" for c, n in run.missing]
        run.judge(load_baseline(settings.baseline), holm=settings.holm)
        for c in run.comparisons:
            self.user_properties.append((f"rnnmemory_gate_{c.cell}-L{c.length}", c.status))
        problems = [c for c in run.comparisons if c.status not in (UNCHANGED, IMPROVED)]
        if not problems and not absent:
            return  # a frontier that moved without a significant drop is called out, not failed
        lines = [f"{self.suite.name}: the capability gate failed against {settings.baseline}"]
        lines += [f"  {line}" for line in run.gate_lines()]
        if absent:
            lines.append(
                f"  no result here for {', '.join(absent)}: they failed to run, were deselected, or ran on "
                "another pytest-xdist worker (use --dist loadgroup so a suite stays on one worker)"
            )
        if any(c.status != "regressed" for c in problems):
            lines.append("  refresh the baseline on purpose, from a run you trust, with --rnn-save-baseline")
        raise CaseFailure("\n".join(lines))

    def reportinfo(self):
        return self.path, None, f"{self.suite.name}: gate against the baseline"


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
    if record.get("cached"):
        lines.append("  (stored by an earlier run of this exact case; --rnn-rerun trains it again)")
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
