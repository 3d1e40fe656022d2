"""What a run ran on: the versions and the device, for reports, baselines and the result store's keys."""

from __future__ import annotations

import platform

import numpy
import scipy
import torch

from . import __version__


def environment(device: str) -> dict[str, str]:
    """Versions and device, for the report's header."""
    return {
        "pytest_rnnmemory": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": device,
    }


def torch_version() -> str:
    return torch.__version__
