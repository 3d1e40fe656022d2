"""Retraining one trial of a finished run, alone, from the seed its JSON report holds."""

from __future__ import annotations

from dataclasses import dataclass

from .engine import train_case
from .errors import RnnMemoryError
from .outcome import CaseOutcome
from .recipes import Recipe
from .records import TrialRecord
from .results import SuiteRun
from .schemes import SCHEMES
from .spec import CaseSpec


@dataclass(frozen=True)
class Replay:
    """The trial as reported, and the trial trained again."""

    reported: TrialRecord
    outcome: CaseOutcome

    @property
    def metric(self) -> float:
        return self.outcome.metrics[0]

    def matches(self, tolerance: float = 1e-3) -> bool:
        """Whether the retrained trial ends where the report says it did."""
        return abs(self.metric - self.reported.metric) <= tolerance


def replay_trial(run: SuiteRun, cell: str, length: int, trial: int, device: str = "cpu") -> Replay:
    """Train trial ``trial`` of case (``cell``, ``length``) of a reported run again, alone.

    A trial's result depends only on its seed and the case's configuration,
    so it ends the same alone as it did among the others.
    """
    if (cell, length) not in run.records:
        raise RnnMemoryError(_no_trials(run, cell, length))
    case = run.records[(cell, length)]
    if case.scheme not in SCHEMES:  # a report's scheme is how its trials ran: replay runs them so
        raise RnnMemoryError(
            f"{cell} at length {length}: its scheme {case.scheme!r} is none of this version's "
            f"({', '.join(SCHEMES)}), so its trials cannot be trained again as they ran"
        )
    if not 0 <= trial < len(case.trials):
        raise RnnMemoryError(f"--trial must be in 0..{len(case.trials) - 1} for this case, got {trial}")
    reported = case.trials[trial]
    config = run.config
    trained_cell = run.trained_cell(case)
    model, train = Recipe(tuple(case.recipe.items())).apply(config.model, config.train)
    spec = CaseSpec(
        task=config.suite.task,
        task_params=dict(config.task),
        cell=trained_cell,
        length=length,
        model=model,
        train=train,
        metric=config.success.metric,
        threshold=config.success.threshold,
        trial_seeds=(reported.seed,),
        shuffle_labels=cell == "shuffled",
    )
    return Replay(reported, train_case(spec, device=device, scheme=case.scheme))


def _no_trials(run: SuiteRun, cell: str, length: int) -> str:
    """Why the report has no trial of (``cell``, ``length``) to replay: the case raised, did not
    finish, was implied by ``--rnn-frontier``, or is not a case of the report."""
    key, case = (cell, length), f"{cell} at length {length}"
    if key in run.errors:
        raised = run.errors[key]
        return f"{case} raised instead of finishing, so the report has no trial of it to replay: {raised}"
    if key in run.implied:
        implied = run.implied[key]
        return (
            f"{case} was not trained: --rnn-frontier implied {implied.verdict} ({implied.reason}), so the "
            "report has no trial of it to replay"
        )
    if key in run.missing:
        return (
            f"{case} did not finish in the reported run (not run, or interrupted), so the report has no "
            "trial of it to replay"
        )
    known = ", ".join(f"--cell {c} --length {n}" for c, n in run.records)
    return f"the report has no case {cell} at length {length}; it has: {known}"


def describe(replay: Replay) -> str:
    """The retrained trial's curve beside the reported one, and whether they end the same."""
    lines = ["epoch  train loss  val metric  (reported)"]
    reported = replay.reported
    for epoch, (loss, metric) in enumerate(
        zip(replay.outcome.train_loss[0], replay.outcome.val_metric[0], strict=True), start=1
    ):
        was = reported.val_metric[epoch - 1] if epoch <= len(reported.val_metric) else None
        loss_text = "diverged" if loss is None else f"{loss:.4f}"
        lines.append(f"{epoch:5d}  {loss_text:>10}  {metric:10.4f}  ({'' if was is None else f'{was:.4f}'})")
    verdict = "matches the report" if replay.matches() else "DIFFERS from the report"
    lines.append(f"final metric {replay.metric:.4f}; reported {reported.metric:.4f}: {verdict}")
    return "\n".join(lines)
