"""What a verdict does to its item, as a table: control x claim x gate x inconclusive policy."""

import pytest

from pytest_rnnmemory.policy import AGAINST_CLAIM, GATE_JUDGES, LEAKY_CONTROL, Action, judge_case
from pytest_rnnmemory.stats import Verdict

L, F, Q = Verdict.LEARNS, Verdict.FAILS, Verdict.INCONCLUSIVE  # Q: the question stays open
PASS, FAIL, SKIP = Action.PASS, Action.FAIL, Action.SKIP

# verdict, control, claim, gated, inconclusive policy -> action, reason
TABLE = [
    # Controls pass unless they learn: then the criterion needs no memory.
    (L, True, None, False, "fail", FAIL, LEAKY_CONTROL),
    (L, True, None, True, "skip", FAIL, LEAKY_CONTROL),
    (F, True, None, False, "fail", PASS, None),
    (Q, True, None, False, "skip", PASS, None),
    (Q, True, None, True, "fail", PASS, None),
    # A case that learns passes, whatever is claimed or gated (xfail turns a claimed failure into XPASS).
    (L, False, None, False, "fail", PASS, None),
    (L, False, L, True, "fail", PASS, None),
    (L, False, F, False, "fail", PASS, None),
    # Claimed to learn: anything else fails, with or without a gate, whatever the policy.
    (F, False, L, False, "fail", FAIL, AGAINST_CLAIM),
    (Q, False, L, False, "skip", FAIL, AGAINST_CLAIM),
    (F, False, L, True, "fail", FAIL, AGAINST_CLAIM),
    # Claimed to fail: the item fails, and the xfail marker expects exactly that.
    (F, False, F, False, "fail", FAIL, None),
    (Q, False, F, False, "skip", FAIL, None),
    (F, False, F, True, "fail", FAIL, None),
    # No claim, gated: the gate judges the counts.
    (F, False, None, True, "fail", PASS, GATE_JUDGES),
    (Q, False, None, True, "skip", PASS, GATE_JUDGES),
    # No claim, no gate.
    (F, False, None, False, "fail", FAIL, None),
    (F, False, None, False, "skip", FAIL, None),
    (Q, False, None, False, "fail", FAIL, None),
    (Q, False, None, False, "skip", SKIP, None),
]


@pytest.mark.parametrize(("verdict", "control", "claim", "gated", "policy", "action", "reason"), TABLE)
def test_the_item_does_what_the_table_says(verdict, control, claim, gated, policy, action, reason):
    judgement = judge_case(verdict, control=control, claim=claim, gated=gated, inconclusive=policy)
    assert (judgement.action, judgement.reason) == (action, reason)


def test_the_table_covers_every_combination():
    combinations = {
        (v, c, claim, g, p)
        for v in Verdict
        for c in (True, False)
        for claim in ((None,) if c else (None, L, F))
        for g in (True, False)
        for p in ("fail", "skip")
    }
    # Every combination gets an answer, and the table pins at least one per (verdict, control, claim).
    for combination in combinations:
        verdict, control, claim, gated, policy = combination
        judgement = judge_case(verdict, control=control, claim=claim, gated=gated, inconclusive=policy)
        assert isinstance(judgement.action, Action)
    pinned = {(v, c, claim) for v, c, claim, *_ in TABLE}
    assert pinned == {(v, c, claim) for v, c, claim, _, _ in combinations}
