"""Small case specs for the engine's tests (not a test module)."""

from dataclasses import replace

from pytest_rnnmemory.schema import ModelSection, TrainSection
from pytest_rnnmemory.seeds import trial_seed
from pytest_rnnmemory.spec import CaseSpec


def spec_for(
    cell="lstm", length=6, trials=3, task="latching", hidden=2, metric="accuracy", model=None, **train
):
    """A case of ``trials`` trials with a short recipe; ``train`` overrides keys of ``[train]``,
    ``model`` keys of ``[model]``."""
    recipe = dict(samples=48, val_samples=32, epochs=2, batch_size=16, lr=0.05) | train
    seeds = tuple(trial_seed(0, "engine-test", cell, length, i) for i in range(trials))
    return CaseSpec(
        task=task,
        cell=cell,
        length=length,
        model=ModelSection(hidden=hidden, **(model or {})),
        train=TrainSection(**recipe),
        metric=metric,
        threshold=0.95,
        trial_seeds=seeds,
    )


def alone(spec, i):
    """Trial ``i`` of ``spec`` as a case of its own."""
    return replace(spec, trial_seeds=(spec.trial_seeds[i],))
