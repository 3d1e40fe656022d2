"""The run's settings from the command line and ini file, kept in ``config.stash``."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

from .config import Overrides


@dataclass(frozen=True)
class Settings:
    """What ``--rnn-*`` options and ``rnn_*`` ini keys asked for."""

    suites_dir: Path
    selected: tuple[Path, ...] | None
    cells: tuple[str, ...] | None
    lengths: tuple[int, ...] | None
    trials: int | None
    seed: int | None
    profile: str | None
    #: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; resolved once a suite runs.
    device: str
    report_dir: Path
    inconclusive: str
    #: Compare with this stored run (``--rnn-baseline``); ``None``: no gate.
    baseline: Path | None = None
    #: Store this run's counts here (``--rnn-save-baseline``).
    save_baseline: Path | None = None
    #: Holm's correction across a suite's compared cases (``--rnn-no-holm`` turns it off).
    holm: bool = True
    #: Where finished cases are stored (``--rnn-cache-dir``); ``None``: pytest's cache folder.
    cache_dir: Path | None = None
    #: Train every case again, even with a stored result (``--rnn-rerun``).
    rerun: bool = False
    #: Find each cell's frontier by bisection, skipping implied lengths (``--rnn-frontier``).
    frontier: bool = False

    def overrides(self) -> Overrides:
        """The overrides every suite gets."""
        return Overrides(
            cells=self.cells,
            lengths=self.lengths,
            trials=self.trials,
            seed=self.seed,
            profile=self.profile,
        )

    def with_device(self, device: str) -> Settings:
        """These settings with ``device`` resolved (``auto`` -> ``cuda`` or ``cpu``)."""
        return dataclasses.replace(self, device=device)

    @property
    def active(self) -> bool:
        """True when the run was asked for suites by name."""
        return self.selected is not None


SETTINGS = pytest.StashKey[Settings]()


@functools.cache
def resolve_device(value: str) -> str:
    """The device a ``--rnn-device`` value means here; imports torch, so call it only for a suite run."""
    if value == "cpu":
        return value
    import torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise pytest.UsageError(f"--rnn-device={value}: CUDA is not available here; use cpu or auto")
    if ":" in value and int(value.split(":")[1]) >= torch.cuda.device_count():
        raise pytest.UsageError(
            f"--rnn-device={value}: only {torch.cuda.device_count()} CUDA device(s) visible"
        )
    return value
