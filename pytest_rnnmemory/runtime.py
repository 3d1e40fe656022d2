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


NO_CUDA = "CUDA is not available here"


def cuda_problem(device: str) -> str | None:
    """What keeps the CUDA device ``device`` (``cuda`` or ``cuda:N``) from being used here: no CUDA,
    or N past the devices visible; ``None``: nothing."""
    if not torch.cuda.is_available():
        return NO_CUDA
    count = torch.cuda.device_count()
    if ":" in device and int(device.partition(":")[2]) >= count:
        return f"only {count} CUDA device(s) visible here (cuda:0 to cuda:{count - 1})"
    return None
