"""Live progress of a long case, through logging so that it never garbles pytest's output.

Progress lines go to the ``pytest_rnnmemory`` logger at INFO level, only for
a case that has run for :data:`INTERVAL_S` seconds or more, then every
:data:`INTERVAL_S` seconds and once at its end. The plugin shows them live
through pytest's live logging (``--rnn-progress``), and pytest attaches them
to a failing case's report.
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
    last: list[float | None] = [None]  # when the last line was logged

    def report(epoch: int, epochs: int, elapsed_s: float) -> None:
        now = time.monotonic()
        shown = last[0] is not None
        if epoch < epochs and (elapsed_s < INTERVAL_S or (shown and now - last[0] < INTERVAL_S)):
            return
        if epoch == epochs and not shown:
            return  # a short case: its result line says enough
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
