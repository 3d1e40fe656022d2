"""Seeds of trials, derived so that a case gives the same result wherever it runs."""

from __future__ import annotations

import hashlib

import torch

#: The independent random streams of one trial; ``eval-<length>`` streams test it at other lengths;
#: ``shuffle`` moves the training set's targets (the ``shuffled`` control), ``shuffle-<set>`` another's.
STREAMS = ("init", "train", "val", "test", "order", "shuffle", "shuffle-val", "shuffle-test")
EVAL_PREFIX = "eval-"


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts`` (not on process, worker or run order)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def trial_seed(seed: int, suite: str, cell: str, length: int, trial: int) -> int:
    """The seed of one trial: a function of (seed, suite, cell, length, trial index)."""
    return derive_seed("trial", seed, suite, cell, length, trial)


def tuning_seed(seed: int, suite: str, cell: str, length: int, trial: int) -> int:
    """The seed of one tuning trial: never a trial seed, and the same for every recipe of a grid."""
    return derive_seed("tune", seed, suite, cell, length, trial)


def stream(trial_seed_: int, name: str) -> torch.Generator:
    """A CPU generator for one of a trial's streams (see ``STREAMS``)."""
    evaluated = name.removeprefix("shuffle-")
    if name not in STREAMS and not (
        evaluated.startswith(EVAL_PREFIX) and evaluated[len(EVAL_PREFIX) :].isdigit()
    ):
        known = f"{', '.join(STREAMS)}, {EVAL_PREFIX}<length>, shuffle-{EVAL_PREFIX}<length>"
        raise ValueError(f"unknown stream {name!r}; known: {known}")
    return torch.Generator().manual_seed(derive_seed(trial_seed_, name))
