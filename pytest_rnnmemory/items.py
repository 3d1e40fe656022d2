"""The pytest nodes: a suite file collects into one item per case, and a gate item when gated."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

import pytest

from .errors import RnnMemoryError, SuiteError
from .options import OPTIONS, RunOptions, resolve_device, shown_path
from .outcome import CaseOutcome
from .policy import Action, judge_case
from .recipes import Search, SearchRecord
from .records import CaseRecord, ImpliedVerdict, implied_verdict
from .runlog import (
    ERROR,
    EXPECTED,
    EXPECTED_SENT,
    IMPLIED,
    RECORD,
    RUN_LOG,
    error_payload,
    expected_payload,
    implied_payload,
    record_payload,
)
from .spec import CaseSpec
from .stats import Verdict, interval_label, trials_to_settle
from .suite import Case, Suite, display_path, load_suite
from .usercode import UserCodeError

#: The marker every item of a suite carries (``-m memory_case``). No cell's name is part of it, so
#: that ``-k rnn`` selects the rnn cases, not every case.
MARKER = pytest.mark.memory_case


#: The report folder, inside the run's, that fresh trials of an inconclusive case are advised to
#: write in: another configuration's report in the run's own folder would replace the suite's.
SECOND_LOOK = "second-look"
#: Where pytest's cache keeps the rates earlier cases trained at (sequence-steps per second).
RATES = "rnnmemory/rates"
#: Recipe searches shared by the lengths of a cell (``search.scope = "cell"``), by their store key.
SEARCHES = pytest.StashKey[dict[str, Search]]()
#: Each suite name collected in this session, and the file that holds it.
SUITE_FILES = pytest.StashKey[dict[str, Path]]()


class CaseFailure(Exception):
    """A case whose verdict is not ``learns``; the message is the whole explanation."""


class _OwnFailures(pytest.Item):
    """An item whose expected failures are explained by their message alone, without a traceback."""

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, UserCodeError):
            case = getattr(self, "case", None)
            return excinfo.value.describe(f"{case.suite.name} {case.id}" if case else self.name)
        if isinstance(excinfo.value, (CaseFailure, RnnMemoryError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class SuiteFile(pytest.File):
    """A suite file: one :class:`CaseItem` per (cell, length), or one :class:`BrokenSuite`."""

    def collect(self):
        options: RunOptions = self.config.stash[OPTIONS]
        try:
            suite = load_suite(self.path, options.overrides(), label=self.nodeid.split("::")[0])
        except SuiteError as exc:
            # One failing item instead of a collection error, so other suites still run.
            yield BrokenSuite.from_parent(self, name="suite", problems=exc.problems)
            return
        first = self.config.stash.setdefault(SUITE_FILES, {}).setdefault(suite.name, self.path)
        if first != self.path:
            shown = display_path(first, self.config.rootpath)
            problem = (
                f'{self.nodeid.split("::")[0]}: suite.name = "{suite.name}": also the name of {shown}; '
                "reports and baselines go by name, so give each suite a suite.name of its own"
            )
            yield BrokenSuite.from_parent(self, name="suite", problems=[problem])
            return
        for case in suite.cases():
            item = CaseItem.from_parent(self, name=case.id, case=case)
            claim = suite.claims.get(case.cell)
            if claim is not None and claim.expects(case.length) == Verdict.FAILS:
                reason = f"the suite claims {case.cell} {claim.describe()}"
                item.add_marker(pytest.mark.xfail(reason=reason, strict=suite.strict))
            yield item
        if options.baseline is not None:
            gate = GateItem.from_parent(self, name="gate", suite=suite)
            # In a gated run the cases do not fail on their verdicts, the gate does: it answers to
            # every case's name, so that -k selecting cases selects their gate too.
            gate.extra_keyword_matches.update(case.id for case in suite.cases())
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
    """One case: train its trials, decide, and pass or fail as :func:`.policy.judge_case` says."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        #: What this case produced, for the report: a record, or the verdict its other lengths imply.
        self.record: CaseRecord | None = None
        self.implied: ImpliedVerdict | None = None
        self.add_marker(MARKER)

    @property
    def options(self) -> RunOptions:
        return self.config.stash[OPTIONS]

    def runtest(self) -> None:
        options = self.options
        case = self.case
        if options.frontier and not case.control:
            self._skip_if_implied()
        cache, key = self._result_store()
        record = self._stored_result(cache, key) or self._train(cache, key)
        self.record = record
        d = record.decision
        for name, value in (
            ("verdict", d.verdict.value),
            ("k", d.k),
            ("n", d.n),
            ("p_greater", d.p_greater),
            ("p_less", d.p_less),
            ("ci_low", d.ci_low),
            ("ci_high", d.ci_high),
            ("recipe", ", ".join(f"{k}={v}" for k, v in record.recipe.items()) or "the suite's"),
        ):
            self.user_properties.append((f"rnnmemory_{name}", value))
        claim = case.suite.claims.get(case.cell)
        judged = functools.partial(
            judge_case,
            record.verdict,
            control=case.control,
            claim=claim.expects(case.length) if claim else None,
            gated=options.baseline is not None,
        )
        judgement = judged(inconclusive=options.inconclusive)
        if judgement.action == Action.PASS:
            return
        skippable = judged(inconclusive="skip").action == Action.SKIP
        # A run that is a second look already is told to take another folder beside its own.
        folder = options.report_dir
        second_look = (
            folder.with_name(f"{SECOND_LOOK}-2") if folder.name == SECOND_LOOK else folder / SECOND_LOOK
        )
        second_look = shown_path(self.config, second_look)
        message = failure_message(record, case.suite.meta.seed, second_look, skippable=skippable)
        if judgement.action == Action.SKIP:
            pytest.skip(message)
        if case.control:
            message += f"\n  {case.cell} is {judgement.reason}"
        elif judgement.reason is not None and claim is not None:
            message += f"\n  the suite claims {case.cell} {claim.describe()}"
        raise CaseFailure(message)

    def _skip_if_implied(self) -> None:
        """Under ``--rnn-frontier``: skip a length whose verdict this cell's other results imply."""
        run = self.config.stash[RUN_LOG].runs.get(self.case.suite.name)
        records = [] if run is None else [r for (c, _), r in run.records.items() if c == self.case.cell]
        implied = implied_verdict(records, self.case.length)
        if implied is None:
            return
        verdict, reason = implied
        self.implied = ImpliedVerdict(self.case.suite.name, self.case.cell, self.case.length, verdict, reason)
        pytest.skip(f"--rnn-frontier: {verdict} implied, not trained: {reason}")

    def _result_store(self):
        """Where this case's result is stored, and its key (``None, None``: no store)."""
        from .cache import ResultCache, case_key

        folder = self.options.cache_dir
        if folder is None:
            if not hasattr(self.config, "cache"):
                return None, None  # pytest's cache is switched off (-p no:cacheprovider)
            folder = self.config.cache.mkdir("rnnmemory")
        device_type = resolve_device(self.options.device).split(":")[0]
        return ResultCache(folder), case_key(self.case, device_type)

    def has_stored_result(self) -> bool:
        """Whether an earlier run stored this case's result (so this run will not train it)."""
        if self.options.rerun:
            return False
        cache, key = self._result_store()
        return cache is not None and cache.has(key)

    def _note_rate(self, spec: CaseSpec, outcome: CaseOutcome) -> None:
        """Keep the rate this case trained at, for the estimate of later runs (pytest's cache)."""
        if not hasattr(self.config, "cache") or outcome.wall_s <= 0:
            return
        from .estimate import rate_key

        steps = self.case.suite.task.steps(self.case.length)
        work = outcome.trials * spec.train.epochs * spec.train.samples * steps
        rates = self.config.cache.get(RATES, {})
        device = resolve_device(self.options.device)
        rates[rate_key(spec.cell, spec.hidden, device)] = work / outcome.wall_s
        self.config.cache.set(RATES, rates)

    def _stored_result(self, cache, key: str | None) -> CaseRecord | None:
        """The result of an earlier run of exactly this case, unless ``--rnn-rerun``."""
        if self.options.rerun or cache is None:
            return None
        return cache.get(key)

    def _search(self, cache) -> Search:
        """The recipe search of this case, or of its cell, shared by the cell's lengths and stored."""
        from .cache import search_key
        from .progress import progress_for
        from .tuning import search_recipe

        case = self.case
        device = resolve_device(self.options.device)
        shared = case.suite.config.search.scope == "cell"
        key = search_key(case, device.split(":")[0]) if shared else None
        memo = self.config.stash.setdefault(SEARCHES, {})
        if shared and key in memo:
            return memo[key]
        stored = cache.get_search(key) if shared and cache is not None and not self.options.rerun else None
        label = (
            f"{case.suite.name} {case.cell} (tuning)" if shared else f"{case.suite.name} {case.id} (tuning)"
        )
        search = stored or search_recipe(case, device, progress_for(label))
        if shared:
            memo[key] = search
            if cache is not None and stored is None:
                cache.put_search(key, search)
        return search

    def _train(self, cache, key: str | None) -> CaseRecord:
        """Choose the recipe where the suite searches (a grid of one is its recipe), train the
        verdict's trials, decide, store."""
        from .progress import progress_for
        from .records import case_record
        from .sequential import train_in_stages

        case = self.case
        suite = case.suite
        verdict = suite.verdict
        recipe, searched = case.recipe, None
        if recipe is None:  # the grid holds more than one recipe: a search chooses
            search = self._search(cache)
            recipe = search.recipe
            scope = suite.config.search
            searched = SearchRecord.of(search, case.length, scope.scope, scope.trials)
        spec = case.spec(recipe)
        outcome = train_in_stages(
            spec,
            verdict.stage,
            verdict.p0,
            verdict.alpha,
            device=resolve_device(self.options.device),
            progress=progress_for(f"{suite.name} {case.id}"),
        )
        self._note_rate(spec, outcome)
        record = case_record(
            suite=suite.name,
            cell=case.cell,
            control=case.control,
            length=case.length,
            config_hash=case.config_hash(),
            outcome=outcome,
            seeds=case.trial_seeds(),
            metric=suite.success.metric,
            threshold=suite.success.threshold,
            chance=case.chance,
            p0=verdict.p0,
            alpha=verdict.alpha,
            trials_planned=verdict.trials,
            recipe=recipe.to_json(),
            search=searched,
            stop=spec.train.stop,
            trained_cell=case.trained_cell if case.trained_cell != case.cell else None,
        )
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

    def __init__(self, *, suite: Suite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.add_marker(MARKER)

    def runtest(self) -> None:
        from .gate import IMPROVED, REGRESSED, UNCHANGED

        options: RunOptions = self.config.stash[OPTIONS]
        log = self.config.stash[RUN_LOG]
        run = log.runs.get(self.suite.name)
        if run is None:
            raise CaseFailure(f"{self.suite.name}: no case of this suite ran, so there is nothing to compare")
        absent = [f"{c}-L{n}" for c, n in run.missing]
        comparisons = run.judge(log.baseline(), holm=options.holm)
        for c in comparisons:
            self.user_properties.append((f"rnnmemory_gate_{c.cell}-L{c.length}", c.status))
        problems = [c for c in comparisons if c.status not in (UNCHANGED, IMPROVED)]
        if not problems and not absent:
            return  # a frontier that moved without a significant drop is called out, not failed
        lines = [f"{self.suite.name}: the capability gate failed against {options.baseline}"]
        lines += [f"  {line}" for line in run.gate_lines()]
        if absent:
            lines.append(
                f"  no result here for {', '.join(absent)}: they failed to run, were deselected, or ran on "
                "another pytest-xdist worker (use --dist loadfile, so that a suite file's cases and its gate "
                "run on one worker)"
            )
        if any(c.status != REGRESSED for c in problems):
            lines.append("  refresh the baseline on purpose, from a run you trust, with --rnn-save-baseline")
        raise CaseFailure("\n".join(lines))

    def reportinfo(self):
        return self.path, None, f"{self.suite.name}: gate against the baseline"


def failure_message(record: CaseRecord, seed: int, second_look: str, *, skippable: bool = True) -> str:
    """Why a case did not pass, with the numbers that say so; ``seed`` is the suite's root seed,
    ``second_look`` the report folder that fresh trials of an inconclusive case are advised to
    write in, ``skippable`` whether ``--rnn-inconclusive=skip`` would skip an inconclusive case (not
    one that a claim or a control says must settle)."""
    d = record.decision
    k, n = d.k, d.n
    head = (
        f"{record.cell} {d.verdict} {record.suite} at length {record.length}: "
        f"{k}/{n} trials reached {record.metric} >= {record.threshold}"
    )
    lines = [head]
    if record.search is not None:
        chosen = record.search.chosen_recipe
        lines.append(
            f"  with recipe {chosen.label}, the best of {record.search.distinct} on tuning trials "
            f"({chosen.k}/{chosen.n} there); the report lists every recipe's tuning counts"
        )
    lines += [
        f"  success rate {k / n:.2f}, {interval_label(d.alpha)} interval {d.interval_text}",
        f"  p(rate > {d.p0}) = {d.p_greater:.3g}, p(rate < {d.p0}) = {d.p_less:.3g}, alpha = {d.alpha}",
        f"  median {record.metric} {record.metric_median:.3f} "
        f"(chance {record.chance:.3g}, threshold {record.threshold})",
    ]
    if record.sequences is not None:
        lines.append(f"  sequences to learn: median {record.sequences.text()} (budget {record.budget:,})")
    # Trials that diverge tell of the recipe, not of the count: more of them diverge alike.
    mostly_diverged = 2 * record.diverged >= n
    if record.diverged:
        lines.append(
            f"  {record.diverged} trial(s) diverged (NaN or infinite loss): lower train.lr or set "
            "train.clip" + (", before training more trials" if mostly_diverged else "")
        )
    if record.cached:
        lines.append("  (stored by an earlier run of this exact case; --rnn-rerun trains it again)")
    if d.verdict == Verdict.INCONCLUSIVE and not mostly_diverged:
        more = trials_to_settle(k, n, d.p0, d.alpha)
        if more is None:
            lines.append(
                "  the observed rate is too close to p0 for any practical number of trials to settle it"
            )
        else:
            skip = ", or pass --rnn-inconclusive=skip" if skippable else ""
            lines.append(
                f"  about {more} trials would settle it if the rate held: train them afresh, "
                f"--rnn-trials={more} --rnn-seed={seed + 1} --rnn-report-dir={shlex.quote(second_look)}"
                f"{skip}\n"
                "  (in a report folder of their own: another seed and trial count are another "
                "configuration, whose report would replace the suite's)\n"
                "  (a second look: with this one, it calls a cell at exactly p0 learns about twice as "
                "often as alpha; see python -m pytest_rnnmemory calibrate --looks)"
            )
    return "\n".join(lines)


def report_payloads(item: pytest.Item, call: pytest.CallInfo) -> dict[str, Any]:
    """What a finished item sends with its test report, as plain data: its record or implied
    verdict, or what it raised where it produced neither."""
    if not isinstance(item, CaseItem):
        return {}
    meta = item.case.suite.summary(item.config.rootpath)
    payloads: dict[str, Any] = {}
    if item.record is not None:
        payloads[RECORD] = record_payload(meta, item.record)
    if item.implied is not None:
        payloads[IMPLIED] = implied_payload(meta, item.implied)
    excinfo = call.excinfo
    if not payloads and excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception):
        payloads[ERROR] = error_payload(meta, (item.case.cell, item.case.length), excinfo.value)
    config = item.config
    if hasattr(config, "workerinput") and not config.stash.get(EXPECTED_SENT, False):
        config.stash[EXPECTED_SENT] = True
        # the worker's own run log noted every selected case as its collection finished
        payloads[EXPECTED] = expected_payload(config.stash[RUN_LOG].runs.values())
    return payloads
