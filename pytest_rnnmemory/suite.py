"""A suite file, checked and resolved, and its cases: one (cell, length) each."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import seeds
from .gate import Claim
from .loading import STAGES, Draft, Problems, resolve_eval_lengths
from .recipes import Recipe, only_recipe, searches
from .records import SuiteMeta
from .schema import (
    ModelSection,
    Overrides,
    SuccessSection,
    SuiteConfig,
    SuiteSection,
    TrainSection,
    VerdictSection,
    default_of,
)
from .spec import CaseSpec
from .suite_files import read_toml
from .tasks import Task


@dataclass(frozen=True)
class Case:
    """One (suite, cell, length): one pytest item."""

    suite: Suite
    #: The cell's name; for a control, the control's name (``memoryless``, ``shuffled``).
    cell: str
    length: int
    control: bool = False

    @property
    def id(self) -> str:
        return f"{self.cell}-L{self.length}"

    @property
    def trained_cell(self) -> str:
        """The cell that trains: the ``shuffled`` control trains the suite file's first cell."""
        if self.cell != "shuffled":
            return self.cell
        return (self.suite.declared_cells or self.suite.meta.cells)[0]

    @property
    def eval_lengths(self) -> tuple[int, ...]:
        """The lengths this case's trials are evaluated at besides their own, ascending."""
        return resolve_eval_lengths(self.suite.meta, self.length)

    @property
    def chance(self) -> float:
        """The task's chance level at this case's length."""
        return self.suite.task.chance(self.length)

    def trial_seeds(self) -> tuple[int, ...]:
        """The seeds of the verdict's trials."""
        s = self.suite
        return tuple(
            seeds.trial_seed(s.meta.seed, s.name, self.cell, self.length, i) for i in range(s.verdict.trials)
        )

    def tuning_seeds(self, start: int, stop: int) -> tuple[int, ...]:
        """The seeds of tuning trials ``start .. stop - 1``: the same for every recipe, never a trial's."""
        s = self.suite
        return tuple(
            seeds.tuning_seed(s.meta.seed, s.name, self.cell, self.length, i) for i in range(start, stop)
        )

    def at(self, length: int) -> Case:
        """The case of the same cell at another length of the suite."""
        return Case(self.suite, self.cell, length, self.control)

    @property
    def searched(self) -> bool:
        """Whether this case's recipe comes from a search (a grid of more than one recipe)."""
        return searches(self.suite.config.grid)

    @property
    def recipe(self) -> Recipe | None:
        """The recipe this case trains without a search: its grid's only one, or the suite's own where
        it has no grid; ``None`` where a search chooses it."""
        return only_recipe(self.suite.config.grid)

    def spec(self, recipe: Recipe | None = None, trial_seeds: tuple[int, ...] | None = None) -> CaseSpec:
        """What the engine needs to train this case's trials: its own recipe (:attr:`recipe`, else the
        suite's), or ``recipe`` over the suite's; the verdict's trials, or those of ``trial_seeds``."""
        s = self.suite
        model, train = (recipe or self.recipe or Recipe()).apply(s.model, s.train)
        return CaseSpec(
            task=s.meta.task,
            task_params=dict(s.task.values),
            cell=self.trained_cell,
            length=self.length,
            model=model,
            train=train,
            metric=s.success.metric,
            threshold=s.success.threshold,
            trial_seeds=self.trial_seeds() if trial_seeds is None else trial_seeds,
            shuffle_labels=self.cell == "shuffled",
            eval_lengths=self.eval_lengths,
        )

    def _model(self, section: ModelSection) -> dict[str, Any]:
        """The model ``section`` as it builds this case's cell: of ``model.cell_args``, the arguments
        its cell takes, so that another cell's own do not change this case's configuration."""
        model = _changed(section)
        if "cell_args" in model:
            own = section.args_for(self.trained_cell)
            if own:
                model["cell_args"] = own
            else:
                del model["cell_args"]
        return model

    def configuration(self) -> dict[str, Any]:
        """Everything that determines this case's result, as plain data (what :meth:`config_hash` hashes)."""
        s = self.suite
        control = {"control": True, "trained_cell": self.trained_cell} if self.control else {}
        evaluated = {"eval_lengths": list(self.eval_lengths)} if self.eval_lengths else {}
        search = s.config.to_json()["search"]
        if s.config.search.scope == "cell":
            # the recipe is chosen on tuning at every length of the run, which --rnn-length changes
            search = {**search, "lengths": list(s.meta.lengths)}
        searched = {"search": search} if self.searched else {}
        # a grid of one recipe is no search: its values train as though written in [model] and [train]
        model, train = (self.recipe or Recipe()).apply(s.model, s.train)
        return {
            **control,
            **evaluated,
            **searched,
            "suite": s.name,
            "task": s.meta.task,
            "task_params": dict(s.task.values),
            "cell": self.cell,
            "length": self.length,
            "seed": s.meta.seed,
            "model": self._model(model),
            "train": _changed(train),
            "success": _changed(s.success),
            "verdict": _changed(s.verdict),
        }

    def config_hash(self) -> str:
        """A short hash of :meth:`configuration`: equal hashes mean comparable results.

        Keys at their default are left out, so a key added to the schema later,
        with a default that keeps the old behaviour, changes no hash.
        """
        blob = json.dumps(self.configuration(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    """A checked suite file with its profile and the command line's overrides applied."""

    path: Path
    config: SuiteConfig
    task: Task
    profiles: tuple[str, ...] = ()
    profile: str | None = None
    #: Claims per cell from ``[expect]``; ``strict``: a case that learns where failure is claimed fails.
    claims: dict[str, Claim] = field(default_factory=dict, compare=False)
    strict: bool = False
    #: The file's cells (with its profile), whichever the command line selects: the ``shuffled``
    #: control trains the first, so that selecting cells does not change what a control is.
    declared_cells: tuple[str, ...] = ()
    #: The file's lengths (with its profile), whichever ``--rnn-length`` selects.
    declared_lengths: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.config.suite.name

    @property
    def meta(self) -> SuiteSection:
        return self.config.suite

    @property
    def model(self) -> ModelSection:
        return self.config.model

    @property
    def train(self) -> TrainSection:
        return self.config.train

    @property
    def success(self) -> SuccessSection:
        return self.config.success

    @property
    def verdict(self) -> VerdictSection:
        return self.config.verdict

    def cases(self) -> list[Case]:
        """Every (cell, length) of the suite, cell by cell, lengths in the file's order; controls last."""
        cases = [Case(self, cell, length) for cell in self.meta.cells for length in self.meta.lengths]
        return cases + [
            Case(self, control, length, control=True)
            for control in self.meta.controls
            for length in self.meta.lengths
        ]

    def summary(self, root: Path) -> SuiteMeta:
        """What a report needs to know of this suite, with its path shown relative to ``root``."""
        return SuiteMeta(
            name=self.name,
            description=self.meta.description,
            path=display_path(self.path, root),
            task=self.meta.task,
            profile=self.profile,
            config=self.config,
            declared_cells=self.declared_cells,
            declared_lengths=self.declared_lengths,
        )


def _changed(section: Any) -> dict[str, Any]:
    """The keys of a section dataclass whose values differ from the schema's defaults."""
    return {
        f.name: getattr(section, f.name)
        for f in dataclasses.fields(section)
        if default_of(f) is dataclasses.MISSING or getattr(section, f.name) != default_of(f)
    }


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside, else in full."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(root))
    except ValueError:
        return str(resolved)


def load_suite(path: str | Path, overrides: Overrides | None = None, label: str | None = None) -> Suite:
    """Read, check and resolve the suite at ``path``.

    Raises :class:`.SuiteError` with one line per problem, each naming the
    file (as ``label``, default the path), the key, the value and what is allowed.
    """
    path = Path(path)
    shown = label or path
    draft = Draft(path, read_toml(path, shown), overrides or Overrides(), Problems(shown))
    for group in STAGES:
        for stage in group:
            stage(draft)
        draft.problems.raise_any()
    return Suite(
        path=path,
        config=draft.config(),
        task=draft.task,
        profiles=tuple(draft.profiles),
        profile=draft.overrides.profile,
        claims=draft.claims,
        strict=draft.strict,
        declared_cells=tuple(str(c) for c in draft.declared_cells),
        declared_lengths=tuple(
            n for n in draft.declared_lengths if isinstance(n, int) and not isinstance(n, bool)
        ),
    )
