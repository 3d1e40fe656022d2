"""The records of a run: what a finished case, a trial and an implied verdict are, as typed data.

Records are what travels between processes (pytest-xdist workers send them
in their test reports), what the result store keeps, and what the JSON
report holds. Each is a frozen dataclass whose ``to_json`` writes plain JSON
data and whose ``from_json`` reads it back, checking every value, so that a
stored file that was cut short or edited by hand gives one line naming the
place that is wrong.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import StoredDataError
from .outcome import CaseOutcome, succeeds
from .recipes import SearchRecord
from .schema import SuiteConfig, check_searched_key, check_searched_value
from .stats import Decision, SequencesToLearn, Verdict, decide, sequences_to_learn, verdict_of
from .stored import Fields

#: A case within a suite: (cell, length).
CaseKey = tuple[str, int]


def counts_from_json(fields: Fields) -> tuple[int, int, Verdict, float, float]:
    """``k``, ``n``, the verdict, ``p0`` and ``alpha`` of a stored case; the verdict must be the
    one the counts give."""
    n = fields.integer("n", minimum=1)
    k = fields.integer("k", minimum=0)
    if k > n:
        raise StoredDataError(f"{fields.at('k')}: {k} successes of n = {n} trials")
    p0, alpha = fields.number("p0"), fields.number("alpha")
    if not 0 < p0 < 1:
        raise StoredDataError(f"{fields.at('p0')}: expected a number in (0, 1), got {p0}")
    if not 0 < alpha < 0.5:
        raise StoredDataError(f"{fields.at('alpha')}: expected a number in (0, 0.5), got {alpha}")
    verdict = Verdict(fields.choice("verdict", tuple(v.value for v in Verdict)))
    expected = verdict_of(k, n, p0, alpha)
    if verdict != expected:
        raise StoredDataError(
            f"{fields.at('verdict')}: {verdict.value!r}, but {k}/{n} at p0 = {p0}, alpha = {alpha} "
            f"is {expected.value!r}"
        )
    return k, n, verdict, p0, alpha


def decision_from_json(fields: Fields) -> Decision:
    """The binomial decision stored flat in a record, computed again from its counts, p0 and alpha;
    its stored verdict must be the one they give."""
    k, n, _, p0, alpha = counts_from_json(fields)
    # The p-values and the interval follow from the counts: computed again, so that a report stored
    # when it was the 95% interval reads as the tests decide, and a p-value edited by hand is never
    # printed beside a verdict it contradicts (the stored ones are written, not read).
    return decide(k, n, p0, alpha)


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a case: its seed, where it ended, and its curves."""

    index: int
    seed: int
    metric: float
    success: bool
    diverged: bool
    #: Mean training loss per epoch; ``None`` once the trial diverged.
    train_loss: tuple[float | None, ...]
    val_metric: tuple[float, ...]
    input_gradient: float | None
    #: The final metric at each evaluation length, in the order of the case's generalisation.
    eval_metrics: tuple[float, ...]
    #: Training sequences seen before it stopped on learning (``None``: it never stopped).
    sequences: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "metric": self.metric,
            "success": self.success,
            "diverged": self.diverged,
            "train_loss": list(self.train_loss),
            "val_metric": list(self.val_metric),
            "input_gradient": self.input_gradient,
            "eval_metrics": list(self.eval_metrics),
            "sequences": self.sequences,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> TrialRecord:
        f = Fields(data, where)
        return cls(
            index=f.integer("index", minimum=0),
            seed=f.integer("seed", minimum=0),
            metric=f.number("metric"),
            success=f.boolean("success"),
            diverged=f.boolean("diverged"),
            train_loss=f.numbers("train_loss", nullable=True),
            val_metric=f.numbers("val_metric"),
            input_gradient=f.optional_number("input_gradient"),
            eval_metrics=f.numbers("eval_metrics"),
            sequences=_optional_count(f, "sequences"),
        )


@dataclass(frozen=True)
class GeneralisationRecord:
    """The trained trials of a case, evaluated at another length and judged as at their own."""

    length: int
    decision: Decision
    metric_median: float
    metric_mean: float

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "length": self.length,
            **self.decision.to_dict(),
            "rate": self.decision.rate,
            "metric_median": self.metric_median,
            "metric_mean": self.metric_mean,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> GeneralisationRecord:
        f = Fields(data, where)
        return cls(
            length=f.integer("length", minimum=1),
            decision=decision_from_json(f),
            metric_median=f.number("metric_median"),
            metric_mean=f.number("metric_mean"),
        )


@dataclass(frozen=True)
class CaseRecord:
    """Everything the report and the gate need to know about one finished case."""

    suite: str
    cell: str
    control: bool
    length: int
    #: Equal hashes mean the cases ran under the same configuration (see ``Case.config_hash``).
    config_hash: str
    decision: Decision
    metric: str
    threshold: float
    #: The task's chance level at this length: the best metric that needs no memory.
    chance: float
    metric_median: float
    metric_mean: float
    metric_max: float
    diverged: int
    scheme: str
    device: str
    wall_s: float
    #: Median over trials of the gradient at the first input, at initialisation.
    input_gradient: float | None
    generalisation: tuple[GeneralisationRecord, ...]
    trials: tuple[TrialRecord, ...]
    #: Trials the suite asked for; fewer ran when curtailment settled the verdict early.
    trials_planned: int
    #: Read from the result store of an earlier run rather than trained by this one.
    cached: bool = False
    #: The recipe the verdict's trials trained with: the searched keys' values (empty: the suite's own).
    recipe: dict[str, Any] = field(default_factory=dict)
    #: The recipe search that chose it, as seen at this length (``None``: the suite searches nothing).
    search: SearchRecord | None = None
    #: The training sequences a trial may see, and how many the trials needed to learn
    #: (``train.stop = "learned"``; else ``None``).
    budget: int = 0
    sequences: SequencesToLearn | None = None
    #: The cell a control trained (``shuffled``: the suite file's first cell); ``None``: the case's own.
    trained_cell: str | None = None

    @property
    def key(self) -> CaseKey:
        return (self.cell, self.length)

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict

    @property
    def k(self) -> int:
        return self.decision.k

    @property
    def n(self) -> int:
        return self.decision.n

    @property
    def rate(self) -> float:
        return self.decision.rate

    def stored(self) -> CaseRecord:
        """This record as read back from the result store by a later run."""
        return replace(self, cached=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "cell": self.cell,
            "control": self.control,
            "length": self.length,
            "config_hash": self.config_hash,
            **self.decision.to_dict(),
            "rate": self.decision.rate,
            "metric": self.metric,
            "threshold": self.threshold,
            "chance": self.chance,
            "metric_median": self.metric_median,
            "metric_mean": self.metric_mean,
            "metric_max": self.metric_max,
            "diverged": self.diverged,
            "scheme": self.scheme,
            "device": self.device,
            "wall_s": self.wall_s,
            "input_gradient": self.input_gradient,
            "generalisation": [g.to_json() for g in self.generalisation],
            "trials": [t.to_json() for t in self.trials],
            "trials_planned": self.trials_planned,
            "cached": self.cached,
            "recipe": dict(self.recipe),
            "search": None if self.search is None else self.search.to_json(),
            "budget": self.budget,
            "sequences": None if self.sequences is None else dataclasses.asdict(self.sequences),
            "trained_cell": self.trained_cell,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "case") -> CaseRecord:
        """Read what :meth:`to_json` wrote; the counts must agree with the trials they count, each
        trial's success with its metric, and the recipe must be one that ``[search]`` could choose."""
        f = Fields(data, where)
        cell, length = f.text("cell"), f.integer("length", minimum=1)
        decision = decision_from_json(f)
        threshold = f.number("threshold")
        trials = f.objects("trials", TrialRecord.from_json)
        if len(trials) != decision.n:
            raise StoredDataError(f"{f.at('trials')}: {len(trials)} trials, but n = {decision.n}")
        for i, t in enumerate(trials):
            _check_success(t, threshold, f"{f.at('trials')}[{i}]")
        successes = sum(t.success for t in trials)
        if successes != decision.k:
            raise StoredDataError(f"{f.at('trials')}: {successes} successful trials, but k = {decision.k}")
        generalisation = f.objects("generalisation", GeneralisationRecord.from_json)
        for t in trials:
            if len(t.eval_metrics) != len(generalisation):
                raise StoredDataError(
                    f"{f.at('trials')}[{t.index}].eval_metrics: {len(t.eval_metrics)} values for "
                    f"{len(generalisation)} evaluation lengths"
                )
        _check_generalisation(generalisation, trials, threshold, f.at("generalisation"))
        return cls(
            suite=f.text("suite"),
            cell=cell,
            control=f.boolean("control"),
            length=length,
            config_hash=f.text("config_hash"),
            decision=decision,
            metric=f.text("metric"),
            threshold=threshold,
            chance=f.number("chance"),
            metric_median=f.number("metric_median"),
            metric_mean=f.number("metric_mean"),
            metric_max=f.number("metric_max"),
            diverged=f.integer("diverged", minimum=0),
            scheme=f.text("scheme"),
            device=f.text("device"),
            wall_s=f.number("wall_s"),
            input_gradient=f.optional_number("input_gradient"),
            generalisation=generalisation,
            trials=trials,
            trials_planned=f.integer("trials_planned", minimum=decision.n)
            if f.has("trials_planned")
            else decision.n,
            cached=f.boolean("cached") if f.has("cached") else False,
            recipe=_recipe_from_json(f, f"{cell} at length {length}") if f.has("recipe") else {},
            search=SearchRecord.from_json(f.raw("search"), f.at("search"))
            if f.has("search") and f.raw("search") is not None
            else None,
            budget=f.integer("budget", minimum=0) if f.has("budget") else 0,
            sequences=_sequences_from_json(f)
            if f.has("sequences") and f.raw("sequences") is not None
            else None,
            trained_cell=f.text("trained_cell") if f.has("trained_cell") and f.raw("trained_cell") else None,
        )


def _check_success(trial: TrialRecord, threshold: float, where: str) -> None:
    """A trial succeeds when its final metric reaches the threshold without diverging, and only then."""
    if trial.success == succeeds(trial.metric, trial.diverged, threshold):
        return
    if not trial.success:
        why = f"its metric {trial.metric:g} reaches the threshold {threshold:g}"
    elif trial.diverged:
        why = "the trial diverged"
    else:
        why = f"its metric {trial.metric:g} is below the threshold {threshold:g}"
    raise StoredDataError(f"{where}.success: {str(trial.success).lower()}, but {why}")


def _check_generalisation(
    generalisation: Sequence[GeneralisationRecord],
    trials: Sequence[TrialRecord],
    threshold: float,
    where: str,
) -> None:
    """The successes at each evaluation length are those the trials' metrics there give."""
    for i, entry in enumerate(generalisation):
        k = sum(succeeds(t.eval_metrics[i], t.diverged, threshold) for t in trials)
        if entry.decision.k != k or entry.decision.n != len(trials):
            raise StoredDataError(
                f"{where}[{i}].k: {entry.decision.k} trials succeed at length {entry.length}, but their "
                f"eval_metrics[{i}] give {k}"
                + (f" of {len(trials)}" if entry.decision.n != len(trials) else "")
            )


def _recipe_from_json(f: Fields, case: str) -> dict[str, Any]:
    """A case's recipe: keys that ``[search]`` may vary, each with a value its key allows."""
    recipe = f.mapping("recipe")
    for key, value in recipe.items():
        problem = check_searched_key(key) or check_searched_value(key, value)
        if problem:
            raise StoredDataError(f"{f.at('recipe')}.{key} = {value!r} ({case}): {problem}")
    return recipe


def _optional_count(f: Fields, key: str) -> int | None:
    if not f.has(key) or f.raw(key) is None:
        return None
    return f.integer(key, minimum=0)


def _sequences_from_json(f: Fields) -> SequencesToLearn:
    inner = f.fields("sequences")
    return SequencesToLearn(
        median=_optional_count(inner, "median"),
        low=_optional_count(inner, "low"),
        high=_optional_count(inner, "high"),
        learned=inner.integer("learned", minimum=0),
        trials=inner.integer("trials", minimum=0),
        budget=inner.integer("budget", minimum=0),
    )


def case_record(
    *,
    suite: str,
    cell: str,
    control: bool,
    length: int,
    config_hash: str,
    outcome: CaseOutcome,
    seeds: Sequence[int],
    metric: str,
    threshold: float,
    chance: float,
    p0: float,
    alpha: float,
    trials_planned: int,
    recipe: dict[str, Any] | None = None,
    search: SearchRecord | None = None,
    stop: str = "budget",
    trained_cell: str | None = None,
) -> CaseRecord:
    """The record of a case whose trials (seeded by ``seeds``, in order) produced ``outcome``."""
    successes = outcome.successes(threshold)
    decision = decide(sum(successes), outcome.trials, p0, alpha)
    learned = stop == "learned"
    metrics = outcome.metrics
    # A gradient that overflowed (states grown past float32's range) measured nothing: none, where
    # a NaN stored would make the record unreadable.
    gradients = [g if math.isfinite(g) else None for g in outcome.input_gradient]
    measured = [g for g in gradients if g is not None]
    evaluated = sorted(outcome.eval_metrics.items())
    return CaseRecord(
        suite=suite,
        cell=cell,
        control=control,
        length=length,
        config_hash=config_hash,
        decision=decision,
        metric=metric,
        threshold=threshold,
        chance=chance,
        metric_median=statistics.median(metrics),
        metric_mean=statistics.fmean(metrics),
        metric_max=max(metrics),
        diverged=sum(outcome.diverged),
        scheme=outcome.scheme,
        device=outcome.device,
        wall_s=round(outcome.wall_s, 3),
        input_gradient=statistics.median(measured) if measured else None,
        generalisation=tuple(
            _generalisation(at, values, outcome.diverged, decision, threshold) for at, values in evaluated
        ),
        trials=tuple(
            TrialRecord(
                index=i,
                seed=seed,
                metric=metrics[i],
                success=successes[i],
                diverged=outcome.diverged[i],
                train_loss=tuple(outcome.train_loss[i]),
                val_metric=tuple(outcome.val_metric[i]),
                input_gradient=gradients[i] if gradients else None,
                eval_metrics=tuple(values[i] for _, values in evaluated),
                sequences=outcome.sequences[i] if outcome.sequences else None,
            )
            for i, seed in enumerate(seeds[: len(metrics)])
        ),
        trials_planned=trials_planned,
        recipe=dict(recipe or {}),
        search=search,
        budget=outcome.budget,
        sequences=sequences_to_learn(list(outcome.sequences), outcome.budget)
        if outcome.sequences and learned
        else None,
        trained_cell=trained_cell,
    )


def _generalisation(
    length: int, metrics: Sequence[float], diverged: Sequence[bool], trained: Decision, threshold: float
) -> GeneralisationRecord:
    k = sum(succeeds(m, d, threshold) for m, d in zip(metrics, diverged, strict=True))
    return GeneralisationRecord(
        length=length,
        decision=decide(k, len(metrics), trained.p0, trained.alpha),
        metric_median=statistics.median(metrics),
        metric_mean=statistics.fmean(metrics),
    )


@dataclass(frozen=True)
class ImpliedVerdict:
    """A case that ``--rnn-frontier`` did not train: the verdict its cell's other lengths imply."""

    suite: str
    cell: str
    length: int
    verdict: Verdict
    reason: str

    @property
    def key(self) -> CaseKey:
        return (self.cell, self.length)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "cell": self.cell,
            "length": self.length,
            "verdict": self.verdict.value,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ImpliedVerdict:
        f = Fields(data, where)
        return cls(
            suite=f.text("suite"),
            cell=f.text("cell"),
            length=f.integer("length", minimum=1),
            verdict=Verdict(f.choice("verdict", (Verdict.LEARNS.value, Verdict.FAILS.value))),
            reason=f.text("reason"),
        )


def implied_verdict(records: Sequence[CaseRecord], length: int) -> tuple[Verdict, str] | None:
    """The verdict that one cell's results at other lengths imply at ``length``, with the reason.

    Assumes success falls with length: a cell that learns a longer length
    learns this one; one that fails a shorter length fails this one.
    """
    learned = [r.length for r in records if r.verdict == Verdict.LEARNS and r.length > length]
    if learned:
        return Verdict.LEARNS, f"it learns length {min(learned)}, which is longer"
    failed = [r.length for r in records if r.verdict == Verdict.FAILS and r.length < length]
    if failed:
        return Verdict.FAILS, f"it fails length {max(failed)}, which is shorter"
    return None


def frontier(verdicts: Sequence[tuple[int, Verdict]]) -> int | None:
    """The largest length among (length, verdict) pairs whose verdict is ``learns`` (``None``: none)."""
    learned = [length for length, verdict in verdicts if verdict == Verdict.LEARNS]
    return max(learned) if learned else None


def frontier_text(value: int | None) -> str:
    """A frontier as the reports write it."""
    return "none" if value is None else str(value)


@dataclass(frozen=True)
class SuiteMeta:
    """What a report needs to know of a suite: names, where it came from, and its configuration."""

    name: str
    description: str
    path: str
    task: str
    profile: str | None
    config: SuiteConfig
    #: The suite file's cells and lengths (with its profile), whichever ``--cell`` and
    #: ``--rnn-length`` select; empty where not known (a report read back).
    declared_cells: tuple[str, ...] = ()
    declared_lengths: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "path": self.path,
            "task": self.task,
            "profile": self.profile,
            "config": self.config.to_json(),
            "declared_cells": list(self.declared_cells),
            "declared_lengths": list(self.declared_lengths),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "suite") -> SuiteMeta:
        f = Fields(data, where)
        return cls(
            name=f.text("name"),
            description=f.text("description"),
            path=f.text("path"),
            task=f.text("task"),
            profile=f.text("profile", optional=True),
            config=SuiteConfig.from_json(f.raw("config"), f.at("config")),
            declared_cells=tuple(f.raw("declared_cells")) if f.has("declared_cells") else (),
            declared_lengths=tuple(f.raw("declared_lengths")) if f.has("declared_lengths") else (),
        )
