"""Live progress of a long case, through logging so that it never garbles pytest's output.

Progress lines go to the ``pytest_rnnmemory`` logger at INFO level; pytest
shows them live with ``-o log_cli=true --log-cli-level=INFO`` and attaches
them to a failing case's report otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

LOG = logging.getLogger("pytest_rnnmemory")

#: Seconds between two progress lines of one case.
INTERVAL_S = 5.0


def progress_for(item) -> Callable[[int, int, float], None]:
    """A callback for the engine that logs epoch, trials, elapsed time and an estimate."""
    case = item.case
    trials = case.suite.verdict.trials
    last = [time.monotonic()]

    def report(epoch: int, epochs: int, elapsed_s: float) -> None:
        now = time.monotonic()
        if epoch < epochs and now - last[0] < INTERVAL_S:
            return
        last[0] = now
        left = elapsed_s / epoch * (epochs - epoch)
        LOG.info(
            "%s %s: epoch %d/%d, %d trials, %.0f s elapsed, about %.0f s left",
            case.suite.name,
            case.id,
            epoch,
            epochs,
            trials,
            elapsed_s,
            left,
        )

    return report
