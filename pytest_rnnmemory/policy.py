"""What a case's verdict does to its pytest item: pass, fail or skip, and why.

One pure function of the verdict, whether the case is a control, what the
suite claims at its length, whether a baseline gate judges the run, and what
an inconclusive verdict should do. The items only carry out its answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .stats import Verdict


class Action(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


#: Why a control that learns fails its item.
LEAKY_CONTROL = (
    "a control that remembers nothing: the success criterion is reachable without memory at this length"
)
#: Why a case that fails where the suite claims it learns fails its item.
AGAINST_CLAIM = "against the suite's claim"
#: Why a case without a claim passes under a baseline gate whatever its verdict.
GATE_JUDGES = "the baseline gate judges this case against its stored counts"


@dataclass(frozen=True)
class Judgement:
    action: Action
    #: What to say beside the verdict's own explanation (``None``: the verdict says it all).
    reason: str | None = None


def judge_case(
    verdict: Verdict,
    *,
    control: bool,
    claim: Verdict | None,
    gated: bool,
    inconclusive: str = "fail",
) -> Judgement:
    """The item's fate.

    * A control passes unless it learns: then the criterion is reachable without memory.
    * A case that learns passes (where the suite claims it fails, pytest's xfail
      marker makes that an XPASS, or a failure with ``strict``).
    * A case the suite claims learns fails unless it learns.
    * Without a claim, under a baseline gate, a case passes: the gate judges its counts.
    * Otherwise an inconclusive case is skipped when ``inconclusive == "skip"``, and every
      other case fails (where the suite claims it fails, the xfail marker expects that).
    """
    if control:
        return Judgement(Action.FAIL, LEAKY_CONTROL) if verdict == Verdict.LEARNS else Judgement(Action.PASS)
    if verdict == Verdict.LEARNS:
        return Judgement(Action.PASS)
    if claim == Verdict.LEARNS:
        return Judgement(Action.FAIL, AGAINST_CLAIM)
    if claim is None and gated:
        return Judgement(Action.PASS, GATE_JUDGES)
    if claim is None and verdict == Verdict.INCONCLUSIVE and inconclusive == "skip":
        return Judgement(Action.SKIP)
    return Judgement(Action.FAIL)
