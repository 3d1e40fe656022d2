"""Records as a run writes them, built from counts or trial metrics, for the report's and the gate's tests."""

from pytest_rnnmemory.records import CaseRecord, TrialRecord
from pytest_rnnmemory.stats import decide


def record_of(cell, length, k, n=30, config_hash="h", suite="s", threshold=0.95):
    """A finished case of ``n`` trials of which the first ``k`` succeeded."""
    metrics = [1.0] * k + [0.5] * (n - k)
    return record_with_metrics(
        cell, length, metrics, config_hash=config_hash, suite=suite, threshold=threshold
    )


def record_with_metrics(cell, length, metrics, *, config_hash="h", suite="s", threshold=0.95, gradient=None):
    """A finished case whose trials ended at ``metrics``."""
    successes = [m >= threshold for m in metrics]
    decision = decide(sum(successes), len(metrics))
    return CaseRecord(
        suite=suite,
        cell=cell,
        control=False,
        length=length,
        config_hash=config_hash,
        decision=decision,
        metric="accuracy",
        threshold=threshold,
        chance=0.5,
        metric_median=sorted(metrics)[len(metrics) // 2],
        metric_mean=sum(metrics) / len(metrics),
        metric_max=max(metrics),
        diverged=0,
        scheme="stepwise",
        device="cpu",
        wall_s=1.0,
        input_gradient=gradient,
        generalisation=(),
        trials=tuple(
            TrialRecord(i, 100 + i, m, s, False, (0.7, 0.5), (0.5, m), gradient, ())
            for i, (m, s) in enumerate(zip(metrics, successes, strict=True))
        ),
        trials_planned=len(metrics),
    )
