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

from .engine import Progress, ProgressPoint

LOG = logging.getLogger("pytest_rnnmemory")

#: Seconds between two progress lines of one case.
INTERVAL_S = 5.0


def progress_for(label: str) -> Progress:
    """A callback for the engine that logs, for the case ``label``, where its training stands."""
    last: list[float | None] = [None]  # when the last line was logged

    def report(point: ProgressPoint) -> None:
        now = time.monotonic()
        shown = last[0] is not None
        finished = point.epoch == point.epochs and point.before + point.trials >= (
            point.planned or point.trials
        )
        if not finished and (point.elapsed_s < INTERVAL_S or (shown and now - last[0] < INTERVAL_S)):
            return
        if finished and not shown:
            return  # a short case: its result line says enough
        last[0] = now
        LOG.info(
            "%s: epoch %d/%d, %s, %.0f s elapsed, about %.0f s left",
            label,
            point.epoch,
            point.epochs,
            _trials(point),
            point.elapsed_s,
            point.left_s,
        )

    return report


def _trials(point: ProgressPoint) -> str:
    if point.planned is None:
        return f"{point.trials} trials"
    return f"trials {point.before + 1}-{point.before + point.trials} of {point.planned}"
