"""Each trial's sequences: drawn from its own streams, stacked over trials, kept from the first scored step.

The trials of a case train on data of their own: training and validation
sequences from separate streams of each trial's seed (:mod:`.seeds`), drawn on
the CPU so that a seed gives the same sequences on any device, then moved to
the case's device once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import seeds
from .schema import TrainSection
from .spec import CaseSpec
from .tasks import IGNORE, Task, is_user_task, scored_steps, unscored
from .usercode import DATA, user_code

#: A trial's targets from its own first scored step on: (that step, ``y [S, T - step]``).
Targets = tuple[int, torch.Tensor]


def length_range(spec: CaseSpec, task: Task, rule: str) -> tuple[int, int]:
    """The shortest and longest length a rule of ``train.lengths`` draws for ``spec``'s case."""
    if rule == "up_to":
        return task.min_length, spec.length
    if rule == "spread":
        return spec.length, spec.train.longest(spec.length)
    return spec.length, spec.length


def sample_at_lengths(
    task: Task, spec: CaseSpec, rule: str, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` sequences whose lengths follow ``rule`` (``train.lengths``), right-padded to the longest.

    Each sequence is the task's at its own length, its targets scored by the task's rule
    there; the steps after its end are zero inputs with unscored targets, so that a cell
    running from zero states computes at its real steps exactly what it would on the
    sequence alone, and the padding reaches no loss.
    """
    if rule == "fixed":
        return task.sample(spec.length, count, generator)
    low, high = length_range(spec, task, rule)
    lengths = torch.randint(low, high + 1, (count,), generator=generator)
    steps = task.steps(high)
    x = torch.zeros(count, steps, task.input_size)
    y = unscored(count, steps, regression=task.regression)
    for length in torch.unique(lengths).tolist():
        at = (lengths == length).nonzero().squeeze(1)
        xs, ys = task.sample(length, len(at), generator)
        x[at, : xs.shape[1]] = xs
        y[at, : ys.shape[1]] = ys
    return x, y


class Streams:
    """Each trial's generator of one stream, which later draws continue (streamed training data)."""

    def __init__(self, spec: CaseSpec, name: str) -> None:
        self.generators = [seeds.stream(seed, name) for seed in spec.trial_seeds]
        self.shuffles = [seeds.stream(seed, "shuffle") for seed in spec.trial_seeds]

    def keep(self, rows: list[int]) -> None:
        """Draw for these trials only (indices among the trials now training)."""
        self.generators = [self.generators[i] for i in rows]
        self.shuffles = [self.shuffles[i] for i in rows]


def sample_trials(
    spec: CaseSpec,
    task: Task,
    stream: str | Streams,
    count: int,
    eval_length: int | None = None,
    shuffle: bool = False,
    lengths: str = "fixed",
) -> tuple[torch.Tensor, list[Targets]]:
    """Each trial's sequences, ``x [n, S, T, I]`` stacked, and each trial's :data:`Targets`.

    ``stream`` names each trial's stream, or holds generators that earlier draws left off
    (:class:`Streams`). With ``eval_length``, the sequences that test the trials at that
    length; ``lengths`` is the rule of ``train.lengths``. Trials are drawn one after
    another and copied into place, so that one trial's whole target tensor is alive at a
    time: on long sequences scored at a few steps it is most of the memory, and memory the
    process takes afresh costs a page fault per page. ``shuffle`` moves each trial's targets
    to other sequences of the same set (the ``shuffled`` control, on every set it sees).
    """
    stacked, targets = None, []
    users = is_user_task(spec.task)
    generators = stream.generators if isinstance(stream, Streams) else None
    for i, seed in enumerate(spec.trial_seeds):
        generator = generators[i] if generators is not None else seeds.stream(seed, stream)
        with user_code("task", spec.task, DATA, active=users):
            if eval_length is None:
                x, y = sample_at_lengths(task, spec, lengths, count, generator)
            else:
                x, y = task.sample_longer(spec.length, eval_length, count, generator)
        if shuffle:
            order = stream.shuffles[i] if isinstance(stream, Streams) else seeds.stream(seed, _moves(stream))
            y = y[torch.randperm(len(y), generator=order)]
        if stacked is None:
            stacked = x.new_empty((spec.trials, *x.shape))
        stacked[i] = x
        first = first_scored(y)
        targets.append((first, y[..., first:].clone()))
    return stacked, targets


def _moves(stream: str) -> str:
    """The stream that moves the targets of a trial's ``stream`` (the ``shuffled`` control): the
    training set's keeps the name it always had, so its sequences stay as they were drawn."""
    return "shuffle" if stream == "train" else f"shuffle-{stream}"


def first_scored(y: torch.Tensor) -> int:
    """The first step scored in any sequence of targets ``y [S, T]`` (the last step if none is):
    readout and loss need only the steps from it on."""
    found = scored_anywhere(y).nonzero()
    return int(found.min()) if len(found) else y.shape[-1] - 1


def scored_anywhere(y: torch.Tensor) -> torch.Tensor:
    """Which steps of targets ``y [..., T]`` are scored in at least one sequence, ``[T]``."""
    rows = y.reshape(-1, y.shape[-1])
    if rows.is_floating_point():
        return scored_steps(rows).any(0)
    # Classes are >= 0 > IGNORE, so a step is scored somewhere where its largest target is a class;
    # a max is several times faster than comparing every target.
    return rows.amax(0) > IGNORE


def stack_targets(targets: list[Targets], first: int, regression: bool) -> torch.Tensor:
    """The trials' targets from step ``first`` on, stacked: ``[n, S, T - first]``.

    ``first`` is at most any trial's own first scored step; the steps between are unscored.
    """
    rows = []
    for own, y in targets:
        if own > first:
            y = torch.cat([unscored(len(y), own - first, regression=regression), y], dim=-1)
        rows.append(y)
    return torch.stack(rows)


@dataclass(frozen=True)
class Sequences:
    """Stacked sequences of every trial: inputs ``x [n, S, T, I]``, targets ``y [n, S, T - first]``."""

    x: torch.Tensor
    y: torch.Tensor
    #: The step the targets start at: the first step scored in any trial's sequences.
    first: int

    @classmethod
    def draw(
        cls,
        spec: CaseSpec,
        task: Task,
        stream: str | Streams,
        count: int,
        device: torch.device,
        eval_length: int | None = None,
        lengths: str = "fixed",
        shuffle: bool = False,
    ) -> Sequences:
        """``count`` sequences per trial from each trial's stream ``stream``, on ``device``."""
        x, targets = sample_trials(spec, task, stream, count, eval_length, shuffle, lengths)
        first = min(own for own, _ in targets)
        return cls(x.to(device), stack_targets(targets, first, task.regression).to(device), first)

    def keep(self, rows: torch.Tensor) -> Sequences:
        """These sequences of the trials ``rows`` selects only."""
        return Sequences(self.x[rows], self.y[rows], self.first)


@dataclass(frozen=True)
class TrialData:
    """Each trial's training and validation sequences, stacked, from one first scored step on."""

    train: Sequences
    val: Sequences

    @classmethod
    def draw(
        cls,
        spec: CaseSpec,
        task: Task,
        device: torch.device,
        streams: Streams | None = None,
        count: int | None = None,
    ) -> TrialData:
        """``count`` training sequences per trial (``train.samples``; drawn from ``streams`` where they
        are streamed) and the validation sequences."""
        train, lengths = spec.train, spec.train.lengths
        val_lengths = lengths if train.val_lengths == "train" else "fixed"
        count = train.samples if count is None else count
        x, y = sample_trials(
            spec, task, streams or "train", count, shuffle=spec.shuffle_labels, lengths=lengths
        )
        xv, yv = sample_trials(
            spec, task, "val", train.val_samples, shuffle=spec.shuffle_labels, lengths=val_lengths
        )
        # Targets from the first step scored anywhere on only: the steps before it are never read.
        first = min(own for own, _ in [*y, *yv])
        regression = task.regression
        return cls(
            Sequences(x.to(device), stack_targets(y, first, regression).to(device), first),
            Sequences(xv.to(device), stack_targets(yv, first, regression).to(device), first),
        )


#: Input values of streamed sequences one trial draws at once, at most: about 27 MB of float32.
#: Per trial, not per case: how a trial's stream is cut into pieces decides what it draws (a piece
#: of a balanced task is balanced), so the cut must not depend on the trials beside it. The value
#: is the one the repository's streamed reports were drawn with (2^26 over their 10 trials).
STREAM_FLOATS_PER_TRIAL = (1 << 26) // 10


def stream_piece(train: TrainSection, steps: int, inputs: int) -> int:
    """Sequences a trial draws at a time from its stream: the checks' interval, within memory, in
    whole minibatches. It depends on the trial's sequences alone, so that a trial draws the same
    sequences alone, beside other trials, in stages or in a larger run."""
    fits = max(train.batch_size, STREAM_FLOATS_PER_TRIAL // max(1, steps * inputs))
    piece = min(train.check_interval, fits, train.max_sequences)
    return max(train.batch_size, piece // train.batch_size * train.batch_size)


class EpochOrders:
    """Each trial's order of its training sequences, a fresh one every epoch, from its ``order`` stream."""

    def __init__(self, spec: CaseSpec, device: torch.device) -> None:
        self.samples = spec.train.samples
        self.device = device
        self.generators = [seeds.stream(seed, "order") for seed in spec.trial_seeds]

    def next(self) -> torch.Tensor:
        """The next epoch's orders, int64 ``[n, S]``."""
        orders = [torch.randperm(self.samples, generator=g) for g in self.generators]
        return torch.stack(orders).to(self.device)

    def keep(self, rows: list[int]) -> None:
        """Draw the orders of these trials only (indices among the trials now training)."""
        self.generators = [self.generators[i] for i in rows]
