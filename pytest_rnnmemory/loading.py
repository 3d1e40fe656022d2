"""Reading a suite file in stages, each adding its problems to one list, one line per problem.

A stage reads the :class:`Draft` that the stages before it built and adds to
it: the raw tables, the profile and the command line applied, the sections
built against the schema, the task, the claims. Stages run in groups; a group
runs only when the groups before it found nothing wrong, so that a problem is
reported once, where it is, and never again as a consequence.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cells import cell_class, is_user_cell
from .cells.protocol import check_cell
from .data import stream_piece
from .errors import CellError, SuiteError, TaskError, did_you_mean
from .gate import Claim
from .schema import (
    FREE_SECTIONS,
    MAX_LENGTH,
    MAX_RECIPES,
    SECTIONS,
    Grid,
    ModelSection,
    Overrides,
    ReferenceFigure,
    ReferenceSection,
    SearchSection,
    SuccessSection,
    SuiteConfig,
    SuiteSection,
    TrainSection,
    VerdictSection,
    check_grid_axis,
    check_value,
    grid_size,
    is_cell_key,
    is_required,
    keys_of,
)
from .schema import name as name_problem
from .schemes import ENGINE_CHOICES, SCHEMES, unknown_scheme
from .tasks import TASKS, Task, parameter_problem, task_class


class Problems:
    """The problems found in one suite file, each as ``FILE: KEY = VALUE: what is allowed``."""

    def __init__(self, label: Path | str) -> None:
        self.label = label
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{self.label}: {where}: {message}")

    def raise_any(self) -> None:
        if self.lines:
            raise SuiteError(self.lines)


@dataclass
class Draft:
    """A suite file on its way to a :class:`.Suite`: what the stages so far have read and built."""

    path: Path
    data: dict[str, Any]
    overrides: Overrides
    problems: Problems
    #: ``[profiles.NAME]`` tables, and the names of those that are broken (reported, never applied).
    profiles: dict[str, Any] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    #: The file's sections with the profile and the command line applied.
    merged: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    task: Task | None = None
    grid: Grid = ()
    claims: dict[str, Claim] = field(default_factory=dict)
    strict: bool = False
    reference: ReferenceSection | None = None
    #: ``suite.cells`` and ``suite.lengths`` of the file and its profile, before the command line's
    #: ``--cell`` and ``--rnn-length``.
    declared_cells: tuple[Any, ...] = ()
    declared_lengths: tuple[Any, ...] = ()
    #: The keys the command line gave, each by the option that gave it (``--rnn-length``).
    options: dict[tuple[str, str], str] = field(default_factory=dict)

    def where(self, section: str, key: str, value: Any, index: int | None = None) -> str:
        """How a problem names the value of ``section.key`` (or its item ``index``): by the command
        line's option where that gave it (``--rnn-length 1``), else by the file's key
        (``suite.lengths[0] = 1``)."""
        option = self.options.get((section, key))
        if option is None:
            return f"{section}.{key}{'' if index is None else f'[{index}]'} = {show(value)}"
        if index is not None:
            return f"{option} {value}"
        return f"{option}={','.join(map(str, value)) if isinstance(value, list) else value}"

    def name_of(self, section: str, key: str) -> str:
        """How advice names ``section.key``: by the command line's option where that gave it."""
        return self.options.get((section, key), f"{section}.{key}")

    @property
    def raw_suite(self) -> dict[str, Any]:
        return self.merged.get("suite", {})

    def raw_list(self, key: str) -> list[Any]:
        value = self.raw_suite.get(key)
        return value if isinstance(value, list) else []

    def config(self) -> SuiteConfig:
        """The resolved configuration, once every stage has passed."""
        meta: SuiteSection = self.sections["suite"]
        if not meta.name:
            meta = dataclasses.replace(meta, name=self.path.stem)
        success: SuccessSection = self.sections["success"]
        if not success.metric:
            success = dataclasses.replace(success, metric=self.task.metric)
        return SuiteConfig(
            suite=meta,
            task=dict(self.task.values),
            model=self.sections["model"],
            train=self.sections["train"],
            success=success,
            verdict=self.sections["verdict"],
            search=self.sections["search"],
            grid=self.grid,
            reference=self.reference,
        )


Stage = Callable[[Draft], None]


# -- the file's tables ----------------------------------------------------------------------------

_ALLOWED_SECTIONS = [*SECTIONS, *FREE_SECTIONS]


def check_tables(draft: Draft) -> None:
    """Every top-level entry is a known section, and a table."""
    for section, value in draft.data.items():
        if section not in _ALLOWED_SECTIONS:
            draft.problems.add(f"[{section}]", "unknown section" + allowed(section, _ALLOWED_SECTIONS))
        elif not isinstance(value, dict):
            draft.problems.add(section, f"must be a table ([{section}]), got {show(value)}")


def check_profiles(draft: Draft) -> None:
    """Every profile's overrides name known keys with allowed values; broken profiles are never applied."""
    profiles = draft.data.get("profiles", {})
    draft.profiles = profiles if isinstance(profiles, dict) else {}
    raw_task = draft.data.get("suite", {}).get("task") if isinstance(draft.data.get("suite"), dict) else None
    for name, override in draft.profiles.items():
        before = len(draft.problems.lines)
        _check_profile(f"profiles.{name}", override, draft.problems)
        if isinstance(override, dict) and "task" in override:
            task = _profile_task(override, raw_task)
            _check_profile_task(f"profiles.{name}.task", task, override["task"], draft.problems)
        if isinstance(override, dict) and isinstance(override.get("suite"), dict):
            _check_profile_names(f"profiles.{name}.suite", override["suite"], draft.problems)
            _check_profile_controls(f"profiles.{name}.suite", override["suite"], draft)
            _check_profile_lengths(name, override, draft)
        if len(draft.problems.lines) > before:
            draft.rejected.add(name)


def _profile_task(override: dict[str, Any], file_task: Any) -> Any:
    """The task a profile runs: its own ``suite.task`` where it sets one, else the file's."""
    suite = override.get("suite")
    return suite["task"] if isinstance(suite, dict) and "task" in suite else file_task


def _check_profile_names(where: str, suite: dict[str, Any], problems: Problems) -> None:
    """A profile's task and cells exist, whether or not this run applies the profile (the cells'
    code is checked further where the profile is applied)."""
    task = suite.get("task")
    if isinstance(task, str):
        try:
            task_class(task)
        except TaskError as exc:
            problems.add(f"{where}.task = {show(task)}", str(exc))
    cells = suite.get("cells")
    for i, cell in enumerate(cells if isinstance(cells, list) else []):
        if isinstance(cell, str):
            try:
                cell_class(cell)
            except CellError as exc:
                problems.add(f"{where}.cells[{i}] = {show(cell)}", str(exc))


def _check_profile_controls(where: str, suite: dict[str, Any], draft: Draft) -> None:
    """A profile that sets cells or controls names no cell that is also a control (of the file's
    where the profile keeps them), whether or not this run applies it."""
    if "cells" not in suite and "controls" not in suite:
        return
    file_suite = draft.data.get("suite") if isinstance(draft.data.get("suite"), dict) else {}
    cells_key, controls_key = (f"{where}.{k}" if k in suite else f"suite.{k}" for k in ("cells", "controls"))
    cells = suite["cells"] if "cells" in suite else file_suite.get("cells")
    controls = suite["controls"] if "controls" in suite else file_suite.get("controls")
    if not isinstance(cells, list) or not isinstance(controls, list):
        return  # reported as a value of the wrong kind
    for i, cell in enumerate(cells):
        if isinstance(cell, str) and cell in controls:
            draft.problems.add(
                f"{cells_key}[{i}] = {show(cell)}", _also_a_control(cell, controls_key, cells_key)
            )


def _check_profile_lengths(name: str, override: dict[str, Any], draft: Draft) -> None:
    """The lengths a profile runs are lengths its task has, whether or not this run applies it: its
    own ``suite.lengths``, or the file's where it switches the task alone."""
    suite = override["suite"]
    if "lengths" not in suite and "task" not in suite:
        return  # the file's lengths and task, checked as the file's
    file_suite = draft.data.get("suite") if isinstance(draft.data.get("suite"), dict) else {}
    lengths = suite["lengths"] if "lengths" in suite else file_suite.get("lengths")
    task_name = _profile_task(override, file_suite.get("task"))
    try:
        task_cls = task_class(task_name) if isinstance(task_name, str) else None
    except TaskError:
        return  # reported as the profile's or the file's suite.task
    if task_cls is None or not isinstance(lengths, list):
        return
    # The task with the parameters this profile gives it; where they are refused, that is reported.
    params = dict(override.get("task") or {}) if isinstance(override.get("task"), dict) else {}
    if "task" not in suite or suite["task"] == file_suite.get("task"):
        file_params = draft.data.get("task")
        params = {**(file_params if isinstance(file_params, dict) else {}), **params}
    try:
        task = task_cls(**{k: v for k, v in params.items() if k in task_cls.params})
    except TaskError:
        return
    key = f"profiles.{name}.suite.lengths" if "lengths" in suite else "suite.lengths"
    for i, length in enumerate(lengths):
        if isinstance(length, int) and not isinstance(length, bool) and length >= 1:
            try:
                task.check_length(length)
            except TaskError as exc:
                if "lengths" in suite:
                    draft.problems.add(f"{key}[{i}] = {length}", str(exc))
                else:
                    draft.problems.add(
                        f"{key}[{i}] = {length} (under profiles.{name}, which runs task {task_name!r})",
                        f"{exc}; set profiles.{name}.suite.lengths to the lengths it runs",
                    )


def apply_profile(draft: Draft) -> None:
    """The file's sections with the selected profile's overrides."""
    draft.merged = {
        k: flatten_search(v) if k == "search" else dict(v)
        for k, v in draft.data.items()
        if k in _ALLOWED_SECTIONS and k not in ("profiles", "expect") and isinstance(v, dict)
    }
    chosen = draft.overrides.profile
    if chosen is None:
        return
    if chosen not in draft.profiles:
        defined = ", ".join(draft.profiles) or "none"
        draft.problems.add("profiles", f"profile {chosen!r} is not defined; defined: {defined}")
    elif chosen not in draft.rejected and isinstance(draft.profiles[chosen], dict):
        # A broken profile is reported once, as profiles.NAME...; it is not applied.
        profile = draft.profiles[chosen]
        if _profile_task(profile, None) not in (None, draft.merged.get("suite", {}).get("task")):
            # The file's [task] holds parameters of the file's task, not of the one the profile runs.
            draft.merged.pop("task", None)
        for section, values in profile.items():
            if isinstance(values, dict):
                values = flatten_search(values) if section == "search" else values
                draft.merged.setdefault(section, {}).update(values)


def check_claims(draft: Draft) -> None:
    """The ``[expect]`` claims: each must be tested by at least one case of the suite."""
    expect = draft.data.get("expect", {})
    if not isinstance(expect, dict):
        return  # reported as a section that is not a table
    problems = draft.problems
    strict = expect.get("strict", False)
    if not isinstance(strict, bool):
        problems.add(f"expect.strict = {show(strict)}", "must be true or false")
        strict = False
    cells = draft.raw_list("cells")
    lengths = [v for v in draft.raw_list("lengths") if isinstance(v, int)]
    for cell, claim in expect.items():
        if cell == "strict":
            continue
        where = f"expect.{cell}"
        if cell not in cells:
            problems.add(
                where,
                f"no case tests this claim: {cell!r} is not in suite.cells ({', '.join(map(str, cells))})",
            )
            continue
        if not isinstance(claim, dict) or not claim:
            problems.add(where, "must be a table such as { learns_up_to = 20, fails_from = 100 }")
            continue
        values = {}
        for k, v in claim.items():
            if k not in ("learns_up_to", "fails_from"):
                problems.add(f"{where}.{k}", "unknown key" + allowed(k, ["learns_up_to", "fails_from"]))
            elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.add(f"{where}.{k} = {show(v)}", "must be an integer >= 1")
            else:
                values[k] = v
        up, down = values.get("learns_up_to"), values.get("fails_from")
        if lengths and up is not None and up < min(lengths):
            problems.add(
                f"{where}.learns_up_to = {up}",
                f"no case tests this claim: the smallest length is {min(lengths)}",
            )
        if lengths and down is not None and down > max(lengths):
            problems.add(
                f"{where}.fails_from = {down}",
                f"no case tests this claim: the largest length is {max(lengths)}",
            )
        if up is not None and down is not None and up >= down:
            problems.add(f"{where}", f"learns_up_to = {up} must be below fails_from = {down}")
        draft.claims[cell] = Claim(up, down)
    draft.strict = strict


def check_reference(draft: Draft) -> None:
    """The ``[reference]`` table: its keys and each figure's, checked like a section's; cells of the suite."""
    reference = draft.data.get("reference")
    if not isinstance(reference, dict):
        return  # absent, or reported as a section that is not a table
    problems = draft.problems
    before = len(problems.lines)
    figures = reference.get("figures", [])
    head = {k: v for k, v in reference.items() if k != "figures"}
    built_head = _build_section("reference", ReferenceSection, head, problems)
    if not isinstance(figures, list) or not all(isinstance(f, dict) for f in figures):
        problems.add(
            f"reference.figures = {json.dumps(figures, default=str)}",
            "must be tables, written [[reference.figures]] with keys " + ", ".join(keys_of(ReferenceFigure)),
        )
        return
    if not figures:
        problems.add(
            "reference",
            "has no figures: add [[reference.figures]] tables with keys "
            + ", ".join(keys_of(ReferenceFigure)),
        )
    # The file's own cells: a profile or the command line may run fewer, and a figure whose case
    # did not run is reported as not compared.
    suite = draft.data.get("suite")
    cells = suite.get("cells") if isinstance(suite, dict) else None
    cells = cells if isinstance(cells, list) else []
    # A figure's length is one the file, one of its profiles (a long profile's, say) or the
    # command line runs.
    tables = [
        suite,
        *(p.get("suite") for p in draft.profiles.values() if isinstance(p, dict)),
        {"lengths": list(draft.overrides.lengths or ())},
    ]
    lengths = sorted(
        {
            n
            for t in tables
            if isinstance(t, dict) and isinstance(t.get("lengths"), list)
            for n in t["lengths"]
            if isinstance(n, int) and not isinstance(n, bool)
        }
    )
    built = []
    for i, raw in enumerate(figures):
        where = f"reference.figures[{i}]"
        figure = _build_section(where, ReferenceFigure, raw, problems)
        built.append(figure)
        if figure is None:
            continue
        if figure.cell not in cells:
            problems.add(
                f"{where}.cell = {show(figure.cell)}",
                f"not a cell of this suite; suite.cells: {', '.join(map(str, cells))}",
            )
        if lengths and figure.length not in lengths:
            problems.add(
                f"{where}.length = {figure.length}",
                "not a length this suite, its profiles or the command line run: "
                + ", ".join(map(str, lengths)),
            )
        if figure.statistic != "mean_sequences" and figure.value > 1:
            problems.add(
                f"{where}.value = {figure.value!r}",
                f"a {figure.statistic} lies in [0, 1] (write 100% as 1.0)",
            )
        if figure.statistic == "mean_sequences" and figure.eval_length:
            problems.add(
                f"{where}.eval_length = {figure.eval_length}",
                "applies to best_accuracy and success_rate only: training sequences are counted at the "
                "trained length",
            )
        elif figure.eval_length not in (0, figure.length) and figure.eval_length not in (
            evaluated := _evaluated_at(draft, figure.length)
        ):
            problems.add(
                f"{where}.eval_length = {figure.eval_length}",
                f"not a length the case at length {figure.length} is evaluated at "
                + (
                    f"(suite.eval_lengths and its profiles' give {', '.join(map(str, sorted(evaluated)))})"
                    if evaluated
                    else "(neither suite.eval_lengths nor a profile's gives any)"
                )
                + "; 0 for the trained length",
            )
    if len(problems.lines) == before and built_head is not None:
        draft.reference = dataclasses.replace(built_head, figures=tuple(built))


def apply_overrides(draft: Draft) -> None:
    """The command line's cells, lengths, trials and seed, over the file and its profile."""
    o = draft.overrides
    draft.declared_cells = tuple(draft.raw_list("cells"))
    draft.declared_lengths = tuple(draft.raw_list("lengths"))
    given = {
        ("suite", "cells", "--cell"): list(o.cells) if o.cells else None,
        ("suite", "lengths", "--rnn-length"): list(o.lengths) if o.lengths else None,
        ("verdict", "trials", "--rnn-trials"): o.trials,
        ("suite", "seed", "--rnn-seed"): o.seed,
    }
    for (section, key, option), value in given.items():
        if value is not None:
            draft.merged.setdefault(section, {})[key] = value
            draft.options[section, key] = option


def build_sections(draft: Draft) -> None:
    """Each schema section's dataclass, every key checked by its own rule; the grid of ``[search]``."""
    for section, cls in SECTIONS.items():
        values = draft.merged.get(section, {})
        if section == "search":
            values = {k: v for k, v in values.items() if "." not in k}
        labels = {k: draft.where(s, k, values[k]) for s, k in draft.options if s == section and k in values}
        draft.sections[section] = _build_section(section, cls, values, draft.problems, labels)
    raw = draft.merged.get("search", {})
    grid = tuple((k, tuple(v)) for k, v in raw.items() if "." in k and check_grid_axis(k, v) is None)
    for k, v in raw.items():
        if "." in k and check_grid_axis(k, v) is not None:
            draft.problems.add(f'search."{k}" = {show(v)}', check_grid_axis(k, v))
    if grid_size(grid) > MAX_RECIPES:
        sizes = " x ".join(str(len(values)) for _, values in grid)
        draft.problems.add(
            "[search]", f"a grid of {sizes} = {grid_size(grid)} recipes; at most {MAX_RECIPES} are searched"
        )
    draft.grid = grid if draft.overrides.search else ()


def build_task(draft: Draft) -> None:
    """The suite's task with its ``[task]`` parameters (their values alone where the task is refused)."""
    name = draft.raw_suite.get("task")
    problems = draft.problems
    if not isinstance(name, str):
        # The schema check reports a missing or non-string task.
        _check_parameter_values("task", draft.merged.get("task", {}), problems)
        return
    try:
        task_cls = task_class(name)
    except TaskError as exc:
        problems.add(f"suite.task = {show(name)}", str(exc))
        _check_parameter_values("task", draft.merged.get("task", {}), problems)
        return
    params = draft.merged.get("task", {})
    known = {k: v for k, v in params.items() if k in task_cls.params}
    for unknown in sorted(params.keys() - known.keys()):
        names = ", ".join(sorted(task_cls.params)) or "none"
        problems.add(f"task.{unknown}", f"unknown parameter of task {task_cls.name!r}; allowed: {names}")
    try:
        draft.task = task_cls(**known)
    except TaskError as exc:
        problems.add(exc.where or "[task]", str(exc))


def check_name(draft: Draft) -> None:
    """The suite's name, which names its reports: ``suite.name``, or the file's stem where unset."""
    meta: SuiteSection | None = draft.sections.get("suite")
    if meta is not None and not meta.name and name_problem(draft.path.stem):
        draft.problems.add(
            "suite.name",
            f"is not set, and the file's name {draft.path.stem!r} cannot name the suite's reports: set "
            "suite.name to a name of letters, digits, '_', '.' or '-' (or rename the file)",
        )


def check_lengths(draft: Draft) -> None:
    """Every length is one the task is defined at."""
    if draft.task is None:
        return
    for i, length in enumerate(draft.raw_list("lengths")):
        if isinstance(length, int) and not isinstance(length, bool) and length >= 1:
            try:
                draft.task.check_length(length)
            except TaskError as exc:
                draft.problems.add(draft.where("suite", "lengths", length, i), str(exc))


@dataclass(frozen=True)
class DataSize:
    """The sequences a case holds at once: ``sequences`` per trial, of ``steps`` steps each."""

    trials: int
    sequences: int
    steps: int
    inputs: int

    @property
    def bytes(self) -> int:
        """Every trial's inputs as float32, and one trial's targets as int64 while they are drawn."""
        return self.trials * self.sequences * self.steps * self.inputs * 4 + self.sequences * self.steps * 8

    def __str__(self) -> str:
        return (
            f"{self.trials} trials x {self.sequences} sequences x {self.steps} steps x "
            f"{self.inputs} input(s) x 4 bytes"
        )


def training_data(task: Task, train: TrainSection, verdict: VerdictSection, length: int) -> DataSize:
    """The training, validation and test sequences of a case of ``length``, for the trials trained at once."""
    trials = verdict.stage if 0 < verdict.stage < verdict.trials else verdict.trials
    held_out = train.val_samples + (
        (train.test_samples or train.val_samples) if train.stop == "learned" else 0
    )
    steps = task.steps(train.longest(length))
    drawn = train.samples if train.data == "fixed" else stream_piece(train, steps, task.input_size)
    return DataSize(trials, drawn + held_out, steps, task.input_size)


def check_sizes(draft: Draft) -> None:
    """Every case's data fits in this machine's memory; the estimate is in the message where it does not."""
    if draft.task is None or any(draft.sections.get(s) is None for s in ("train", "verdict")):
        return
    train: TrainSection = draft.sections["train"]
    verdict: VerdictSection = draft.sections["verdict"]
    memory = physical_memory()
    for i, length in enumerate(draft.raw_list("lengths")):
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or not draft.task.min_length <= length <= MAX_LENGTH
        ):
            continue  # reported by the schema or the task
        data = training_data(draft.task, train, verdict, length)
        budget = "train.samples" if train.data == "fixed" else "train.eval_every, train.val_samples"
        if memory is not None and data.bytes > memory:
            draft.problems.add(
                draft.where("suite", "lengths", length, i),
                f"needs about {data.bytes / 2**30:.3g} GiB for one case's data ({data}), and this machine "
                f"has {memory / 2**30:.3g} GiB; lower {budget} or {draft.name_of('verdict', 'trials')}, or "
                "train the trials in stages (verdict.stage)",
            )


def check_eval_sizes(draft: Draft) -> None:
    """Every case's data at its longest evaluation length fits in this machine's memory, beside its
    training data (held while it is evaluated); the estimate is in the message where it does not."""
    meta: SuiteSection = draft.sections["suite"]
    train: TrainSection = draft.sections["train"]
    verdict: VerdictSection = draft.sections["verdict"]
    memory = physical_memory()
    if not meta.eval_lengths or memory is None:
        return
    for length in meta.lengths:
        evaluated = resolve_eval_lengths(meta, length)
        if not evaluated:
            continue
        trained = training_data(draft.task, train, verdict, length)
        data = dataclasses.replace(
            trained, sequences=train.val_samples, steps=draft.task.steps(evaluated[-1])
        )
        needed = trained.bytes + data.bytes
        if needed > memory:
            draft.problems.add(
                f"suite.eval_lengths = {show(list(meta.eval_lengths))}",
                f"gives length {evaluated[-1]} for the trained length {length}, which needs about "
                f"{needed / 2**30:.3g} GiB for one case's data ({data}, and the training data's "
                f"{trained.bytes / 2**30:.3g} GiB), and this machine has {memory / 2**30:.3g} GiB; lower "
                f"suite.eval_lengths, train.val_samples or {draft.name_of('verdict', 'trials')}, or train "
                "the trials in stages (verdict.stage)",
            )
            return


def physical_memory() -> int | None:
    """This machine's memory in bytes, where the system tells."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _suite_key(draft: Draft, name: str) -> str:
    """Where the run's ``suite.NAME`` comes from: the applied profile, else the file."""
    profile = draft.profiles.get(draft.overrides.profile or "")
    from_profile = isinstance(profile, dict) and name in (profile.get("suite") or {})
    return f"profiles.{draft.overrides.profile}.suite.{name}" if from_profile else f"suite.{name}"


def _given_cells(draft: Draft) -> list[tuple[str, Any]]:
    """The run's cells, each with where it was given: ``--cell NAME``, or its place in the file or
    the profile."""
    key = _suite_key(draft, "cells")
    return [
        (f"--cell {cell}" if draft.overrides.cells else f"{key}[{i}] = {show(cell)}", cell)
        for i, cell in enumerate(draft.raw_list("cells"))
    ]


def check_cells(draft: Draft) -> None:
    """Every cell can be found; a user's cell also builds, runs and batches on a tiny input."""
    model: ModelSection | None = draft.sections.get("model")
    given = _given_cells(draft)
    control = [
        (f"suite.cells[0] = {show(cell)} (the shuffled control's cell)", cell)
        for cell in _control_cell(draft)
    ]
    for where, cell in [*given, *control]:
        if not isinstance(cell, str):
            continue
        try:
            if not is_user_cell(cell) or draft.task is None or model is None:
                cell_class(cell)
            else:
                own = tuple(model.cell_args.get(cell, {}))
                check_cell(cell, draft.task.input_size, model.hidden, model.args_for(cell), own)
        except CellError as exc:
            draft.problems.add(where, str(exc))
    if model is not None:
        check_cell_args(draft, model)


def check_cells_are_not_controls(draft: Draft) -> None:
    """No cell is also one of the suite's controls: its cases would be the control's, trained on the
    same seeds under the same node ids, and one of the two results would be lost."""
    controls = draft.raw_list("controls")
    cells_key = None if draft.overrides.cells else _suite_key(draft, "cells")
    for where, cell in _given_cells(draft):
        if isinstance(cell, str) and cell in controls:
            draft.problems.add(where, _also_a_control(cell, _suite_key(draft, "controls"), cells_key))


def _also_a_control(cell: str, controls_key: str, cells_key: str | None) -> str:
    """Why a cell that is also a control is refused, and what to do; ``cells_key``: the file's or a
    profile's key that lists the cell (``None``: ``--cell`` gave it, and the file keeps its control)."""
    if cells_key is None:
        what = f"leave it out of --cell (the control's cases train it; -k {cell} selects them)"
    else:
        what = (
            f"leave it out of {cells_key} (the control's cases train it) or out of {controls_key} (to "
            "test it as a cell)"
        )
    return f"also one of {controls_key}, which runs it at every length; {what}"


def _control_cell(draft: Draft) -> list[Any]:
    """The cell the ``shuffled`` control trains (the file's ``suite.cells[0]``), where the command
    line's cells leave it out and so nothing else checks it."""
    if "shuffled" not in draft.raw_list("controls") or not draft.declared_cells:
        return []
    cell = draft.declared_cells[0]
    return [] if cell in draft.raw_list("cells") else [cell]


def check_cell_args(draft: Draft, model: ModelSection) -> None:
    """``model.cell_args``: arguments for every cell where all cells are the user's; a cell's own
    table under the name of a user's cell of the suite file (one the command line left out is
    passed over)."""
    cells = [c for c in draft.raw_list("cells") if isinstance(c, str)]
    suite = draft.data.get("suite")
    in_file = suite.get("cells") if isinstance(suite, dict) else None
    named = {*cells, *(c for c in in_file if isinstance(c, str))} if isinstance(in_file, list) else set(cells)
    shared = model.shared_args
    builtin = [c for c in cells if not is_user_cell(c)]
    if shared and builtin:
        example = next((c for c in cells if is_user_cell(c)), "package.module:Class")
        draft.problems.add(
            f"model.cell_args = {show(shared)}",
            f"is for your own cells' constructors, and {' and '.join(builtin)} "
            f"{'is' if len(builtin) == 1 else 'are'} built in: name the cell they are for "
            f'(cell_args = {{ "{example}" = {{ ... }} }})',
        )
    for cell in (k for k in model.cell_args if is_cell_key(k)):
        if not is_user_cell(cell):
            draft.problems.add(f'model.cell_args."{cell}"', "names a built-in cell, which takes no arguments")
        elif cell not in named:
            listed = ", ".join(cells)
            draft.problems.add(
                f'model.cell_args."{cell}"', f"names no cell of this suite; suite.cells: {listed}"
            )


def check_eval_lengths(draft: Draft) -> None:
    """``eval_lengths``: a task that generalises, whole lengths where absolute, lengths it allows
    within the longest length."""
    meta: SuiteSection = draft.sections["suite"]
    task = draft.task
    if not meta.eval_lengths:
        return
    where = f"suite.eval_lengths = {show(list(meta.eval_lengths))}"
    if not task.generalises:
        able = ", ".join(sorted(name for name, cls in TASKS.items() if cls.generalises))
        draft.problems.add(
            where,
            f"task {task.name!r} cannot be evaluated at other lengths: {task.no_generalisation} "
            f"(tasks that can: {able})",
        )
        return
    if meta.eval_unit == "absolute" and any(v != int(v) for v in meta.eval_lengths):
        draft.problems.add(where, "must be whole lengths with suite.eval_unit = 'absolute'")
        return
    for length in meta.lengths:
        for eval_length in resolve_eval_lengths(meta, length):
            gives = f"gives length {eval_length} for the trained length {length}"
            if eval_length > MAX_LENGTH:
                draft.problems.add(where, f"{gives}: lengths must be at most {MAX_LENGTH:_}")
                return
            try:
                task.check_length(eval_length)
            except TaskError as exc:
                draft.problems.add(where, f"{gives}: {exc}")
                return


def check_training(draft: Draft) -> None:
    """Streamed data has a budget, and the training lengths a rule draws are lengths the task has."""
    train: TrainSection = draft.sections["train"]
    if train.data == "stream" and train.max_sequences == 0:
        draft.problems.add(
            'train.data = "stream"',
            "needs train.max_sequences, the training sequences each trial may see (its budget)",
        )
    if train.data == "fixed" and train.max_sequences:
        draft.problems.add(
            f"train.max_sequences = {train.max_sequences}",
            'is the budget of streamed data: it applies with train.data = "stream" only '
            "(fixed data trains epochs x samples)",
        )
    # The file's own [train] table, by its own settings: a profile that changes them (stop =
    # "budget", say) cannot unset the keys that then stop applying.
    written = draft.data.get("train") if isinstance(draft.data.get("train"), dict) else {}
    default = TrainSection()
    for key, setting, value in (
        ("spread", "lengths", "spread"),
        ("eval_every", "stop", "learned"),
        ("test_samples", "stop", "learned"),
    ):
        if key in written and written.get(setting, getattr(default, setting)) != value:
            draft.problems.add(
                f"train.{key} = {show(written[key])}", f'applies with train.{setting} = "{value}" only'
            )
    if train.lengths == "spread":
        meta: SuiteSection = draft.sections["suite"]
        for length in meta.lengths:
            longest = train.longest(length)
            try:
                draft.task.check_length(longest)
            except TaskError as exc:
                draft.problems.add(f"train.spread = {train.spread}", f"gives length {longest}: {exc}")
                return


def check_scheme(draft: Draft) -> None:
    """``train.engine`` names ``auto`` or a scheme of the registry that serves every cell of the suite."""
    train: TrainSection = draft.sections["train"]
    requested = train.engine
    where = f"train.engine = {show(requested)}"
    if requested == "auto":
        return
    if requested not in SCHEMES:
        draft.problems.add(where, unknown_scheme(requested))
        return
    entry = SCHEMES[requested]
    if not entry.builtin_only:
        return
    builtin_free = " or ".join(repr(name) for name, e in SCHEMES.items() if not e.builtin_only)
    meta: SuiteSection = draft.sections["suite"]
    named = [(draft.where("suite", "cells", cell, i), cell) for i, cell in enumerate(meta.cells)]
    named += [
        (draft.where("suite", "controls", c, i), c) for i, c in enumerate(meta.controls) if c != "shuffled"
    ]
    named += [(f"suite.cells[0] = {show(cell)}", cell) for cell in _control_cell(draft)]
    for key, cell in named:
        if not entry.serves(cell):
            draft.problems.add(
                where,
                f"runs the built-in cells {', '.join(entry.cells())} only, and {key} "
                "is not one of them; "
                f"use 'auto' or {builtin_free}",
            )


#: The stages, in groups: a group runs when the groups before it found no problem.
STAGES: tuple[tuple[Stage, ...], ...] = (
    (
        check_tables,
        check_profiles,
        apply_profile,
        check_claims,
        check_reference,
        apply_overrides,
        build_sections,
        build_task,
        check_name,
        check_lengths,
        check_sizes,
        check_cells,
        check_cells_are_not_controls,
    ),
    (check_eval_lengths, check_training),
    (check_eval_sizes, check_scheme),
)


def resolve_eval_lengths(meta: SuiteSection, length: int) -> tuple[int, ...]:
    """The evaluation lengths of a case trained at ``length``: distinct, ascending, not ``length``."""
    return _eval_lengths_at(meta.eval_lengths, meta.eval_unit, length)


def _eval_lengths_at(values: Sequence[float], unit: str, length: int) -> tuple[int, ...]:
    """``suite.eval_lengths = values`` in ``suite.eval_unit = unit`` at the trained ``length``:
    distinct, ascending, not ``length``."""
    multiple = unit == "multiple"
    resolved = {max(1, round(v * length)) if multiple else int(v) for v in values}
    return tuple(sorted(resolved - {length}))


def _evaluated_at(draft: Draft, length: int) -> set[int]:
    """The evaluation lengths a case trained at ``length`` has under the file or one of its
    profiles (a profile's ``suite`` keys over the file's); values the schema refuses count for none."""
    suite = draft.data.get("suite")
    suite = suite if isinstance(suite, dict) else {}
    tables = [suite] + [
        {**suite, **p["suite"]}
        for p in draft.profiles.values()
        if isinstance(p, dict) and isinstance(p.get("suite"), dict)
    ]
    fields = {f.name: f for f in dataclasses.fields(SuiteSection)}
    evaluated: set[int] = set()
    for table in tables:
        values, unit = table.get("eval_lengths", []), table.get("eval_unit", "multiple")
        if check_value(fields["eval_lengths"], values) or check_value(fields["eval_unit"], unit):
            continue  # reported where the file or the profile gives it
        evaluated.update(_eval_lengths_at(values, unit, length))
    return evaluated


# -- helpers of the stages ------------------------------------------------------------------------


def allowed(given: str, names: list[str]) -> str:
    return f"{did_you_mean(given, names)}; allowed: {', '.join(names)}"


def show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, list, bool)) else repr(value)


def _check_profile_task(where: str, task: Any, params: Any, problems: Problems) -> None:
    """A profile's ``task`` table: a table of parameters the task it runs has (of values any task's
    parameter may have where that task is refused)."""
    if not isinstance(params, dict):
        problems.add(where, f"must be a table of the task's parameters, got {show(params)}")
        return
    try:
        task_cls = task_class(task) if isinstance(task, str) else None
    except TaskError:
        task_cls = None  # reported once, as the file's or the profile's suite.task
    if task_cls is None:
        _check_parameter_values(where, params, problems)
        return
    for key in sorted(params):
        if key not in task_cls.params:
            names = ", ".join(sorted(task_cls.params)) or "none"
            problems.add(f"{where}.{key}", f"unknown parameter of task {task_cls.name!r}; allowed: {names}")
    try:  # the values, as the task checks them where the profile is applied
        task_cls(**{k: v for k, v in params.items() if k in task_cls.params})
    except TaskError as exc:
        at = exc.where or "task"
        problems.add(f"{where}{at.removeprefix('task')}", str(exc))


def _check_parameter_values(where: str, params: Any, problems: Problems) -> None:
    """Each value of a ``task`` table is one any task's parameter may have."""
    for key, value in sorted(params.items()) if isinstance(params, dict) else ():
        problem = parameter_problem(value)
        if problem:
            problems.add(f"{where}.{key} = {value!r}", problem)


def _check_profile(where: str, override: Any, problems: Problems) -> None:
    """A profile's overrides: tables of known sections, of known keys with values their checks
    allow, and an engine that names a scheme."""
    if not isinstance(override, dict):
        problems.add(where, "must be a table of overrides, e.g. [profiles.quick] verdict.trials = 10")
        return
    for section, values in override.items():
        if section == "task":
            continue  # the task checks its own parameters once the profile is applied
        if section not in SECTIONS:
            problems.add(f"{where}.{section}", "unknown section" + allowed(section, list(SECTIONS)))
        elif not isinstance(values, dict):
            problems.add(f"{where}.{section}", f"must be a table of keys, got {values!r}")
        else:
            _check_keys(f"{where}.{section}", SECTIONS[section], values, problems)
            engine = values.get("engine") if section == "train" else None
            if isinstance(engine, str) and engine not in ENGINE_CHOICES:
                problems.add(f"{where}.train.engine = {show(engine)}", unknown_scheme(engine))


def flatten_search(table: dict[str, Any]) -> dict[str, Any]:
    """``[search]`` with ``train.lr = [...]`` written unquoted (a nested table) as ``"train.lr" = [...]``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in SECTIONS:
            flat.update({f"{key}.{name}": inner for name, inner in value.items()})
        else:
            flat[key] = value
    return flat


def _check_keys(
    prefix: str, cls: type, values: dict[str, Any], problems: Problems, labels: dict[str, str] | None = None
) -> None:
    """Each key of ``values`` is one of ``cls`` with a value its check allows; a problem names the
    key as ``labels`` gives it, else as ``PREFIX.KEY = VALUE``."""
    fields = keys_of(cls)
    if cls is SearchSection:
        values = flatten_search(values)
        for k, value in values.items():
            if "." in k and check_grid_axis(k, value) is not None:
                problems.add(f'{prefix}."{k}" = {show(value)}', check_grid_axis(k, value))
        values = {k: v for k, v in values.items() if "." not in k}
    for k, value in values.items():
        if k not in fields:
            problems.add(f"{prefix}.{k}", "unknown key" + allowed(k, list(fields)))
            continue
        message = check_value(fields[k], value)
        if message:
            problems.add((labels or {}).get(k) or f"{prefix}.{k} = {show(value)}", message)


def _build_section(
    section: str, cls: type, values: dict[str, Any], problems: Problems, labels: dict[str, str] | None = None
) -> Any:
    """The section's dataclass, or ``None`` when a key of it is wrong (the problems say which, each
    named as ``labels`` gives it where it does)."""
    before = len(problems.lines)
    _check_keys(section, cls, values, problems, labels)
    kwargs = {}
    for k, f in keys_of(cls).items():
        if k in values:
            kwargs[k] = tuple(values[k]) if isinstance(values[k], list) else values[k]
        elif is_required(f):
            problems.add(f"{section}.{k}", "is required: " + f.metadata["doc"])
    return cls(**kwargs) if len(problems.lines) == before else None
