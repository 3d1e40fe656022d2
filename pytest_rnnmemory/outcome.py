"""What training one case's trials produced, trial by trial, before any verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: How a field of :class:`CaseOutcome` joins over parts of a case trained one after another
#: (stages of trials): per trial (concatenated), per evaluation length (concatenated per key),
#: shared by every part (the first part's), or summed.
PER_TRIAL, PER_LENGTH, SHARED, SUMMED = "per trial", "per length", "shared", "summed"


def _joined(how: str, **kwargs: Any) -> Any:
    return field(metadata={"join": how}, **kwargs)


def succeeds(metric: float, diverged: bool, threshold: float) -> bool:
    """Whether a trial that ended at ``metric`` succeeded: it reached ``threshold`` without diverging."""
    return metric >= threshold and not diverged


@dataclass(frozen=True)
class CaseOutcome:
    """Each trial's final metric, curves and diagnostics, in trial order.

    Every field says how it joins over parts (:meth:`concatenate`), so a field
    added here is carried through training in stages without another change.
    """

    metrics: tuple[float, ...] = _joined(PER_TRIAL)
    diverged: tuple[bool, ...] = _joined(PER_TRIAL)
    #: Per trial, the mean training loss of each epoch (``None`` once diverged).
    train_loss: tuple[tuple[float | None, ...], ...] = _joined(PER_TRIAL)
    #: Per trial, the validation metric after each epoch.
    val_metric: tuple[tuple[float, ...], ...] = _joined(PER_TRIAL)
    scheme: str = _joined(SHARED)
    device: str = _joined(SHARED)
    wall_s: float = _joined(SUMMED)
    #: Per evaluation length, each trial's final metric there.
    eval_metrics: Mapping[int, tuple[float, ...]] = _joined(PER_LENGTH, default_factory=dict)
    #: Per trial, the median over its first training sequences of the norm of the loss's
    #: gradient with respect to the first step's input, at the initial weights.
    input_gradient: tuple[float, ...] = _joined(PER_TRIAL, default=())
    #: Per trial, the training sequences it saw before it stopped on reaching the threshold
    #: (``train.stop = "learned"``); ``None``: it never stopped (censored at the budget).
    sequences: tuple[int | None, ...] = _joined(PER_TRIAL, default=())
    #: The training sequences each trial may see: epochs x samples.
    budget: int = _joined(SHARED, default=0)

    def successes(self, threshold: float) -> list[bool]:
        """Which trials reached ``threshold`` without diverging."""
        return [succeeds(m, d, threshold) for m, d in zip(self.metrics, self.diverged, strict=True)]

    @property
    def trials(self) -> int:
        return len(self.metrics)

    @classmethod
    def concatenate(cls, parts: Sequence[CaseOutcome]) -> CaseOutcome:
        """The outcome of all ``parts``' trials, in order, as if trained in one run."""
        first = parts[0]
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            how = f.metadata["join"]
            got = [getattr(p, f.name) for p in parts]
            if how == PER_TRIAL:
                values[f.name] = tuple(v for part in got for v in part)
            elif how == PER_LENGTH:
                values[f.name] = {
                    k: tuple(v for part in got for v in part[k]) for k in getattr(first, f.name)
                }
            elif how == SUMMED:
                values[f.name] = sum(got)
            elif how == SHARED:
                values[f.name] = got[0]
            else:  # pragma: no cover - a field without a rule is caught by the tests
                raise TypeError(f"CaseOutcome.{f.name} has no join rule")
        return cls(**values)
