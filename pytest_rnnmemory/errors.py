"""The errors that pytest-rnnmemory reports to its users."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class RnnMemoryError(Exception):
    """Base class: something a user can fix, described in words they can act on."""


class SuiteError(RnnMemoryError):
    """A suite file that cannot be used; carries one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class CellError(RnnMemoryError):
    """A cell that cannot be found or does not follow the cell protocol."""


class TaskError(RnnMemoryError):
    """A task that cannot be found, or parameters or a length it does not accept."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        #: The suite key the problem is in, when there is one (``task.noise = -1``).
        self.where = where


class StoredDataError(RnnMemoryError):
    """Stored JSON (a report, a baseline, a stored case) that is not what this version writes.

    The message names the place in the document (``cases[3].trials[0].metric``)
    and what was expected there.
    """


class ReportWriteError(RnnMemoryError):
    """Files of a report that could not be written, each with why; ``written`` holds those that were."""

    def __init__(self, unwritten: list[tuple[Path, str]], written: list[Path]) -> None:
        self.unwritten = list(unwritten)
        self.written = list(written)
        super().__init__("\n".join(f"{path}: not written ({why})" for path, why in self.unwritten))


class FiguresInterrupted(KeyboardInterrupt):
    """Ctrl-C while a report's figures were drawn, after its markdown and JSON were written; still a
    :class:`KeyboardInterrupt` to whoever does not catch it. ``written`` and ``unwritten`` are as
    :class:`ReportWriteError`'s."""

    def __init__(self, written: list[Path], unwritten: list[tuple[Path, str]]) -> None:
        self.written = list(written)
        self.unwritten = list(unwritten)
        super().__init__()


class SchemeError(RnnMemoryError):
    """A scheme that cannot run a case: it does not serve the cell or the device, or is unavailable here."""


def did_you_mean(given: str, names: Iterable[str]) -> str:
    """`` (did you mean 'name'?)`` for the name closest to ``given``; empty where none is close."""
    close = difflib.get_close_matches(given, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
