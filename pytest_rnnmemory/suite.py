"""Reading a suite file, checking it against the schema, and turning it into cases."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from . import seeds
from .cells import CELLS, CellError, cell_class, check_cell
from .config import (
    FREE_SECTIONS,
    SECTIONS,
    ModelSection,
    Overrides,
    SuccessSection,
    SuiteSection,
    TrainSection,
    VerdictSection,
    is_required,
    keys_of,
)
from .engine import CaseSpec
from .errors import SuiteError, TaskError
from .gate import Claim
from .schemes import is_builtin
from .tasks import TASKS, Task, task_class


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
        """The cell that trains: the ``shuffled`` control trains the suite's first cell."""
        return self.suite.meta.cells[0] if self.cell == "shuffled" else self.cell

    @property
    def eval_lengths(self) -> tuple[int, ...]:
        """The lengths this case's trials are evaluated at besides their own, ascending."""
        return resolve_eval_lengths(self.suite.meta, self.length)

    def trial_seeds(self) -> tuple[int, ...]:
        s = self.suite
        return tuple(
            seeds.trial_seed(s.meta.seed, s.name, self.cell, self.length, i) for i in range(s.verdict.trials)
        )

    def spec(self) -> CaseSpec:
        """What the engine needs to train this case's trials."""
        s = self.suite
        return CaseSpec(
            task=s.task,
            cell=self.trained_cell,
            length=self.length,
            hidden=s.model.hidden,
            train=s.train,
            metric=s.success.metric,
            threshold=s.success.threshold,
            trial_seeds=self.trial_seeds(),
            shuffle_labels=self.cell == "shuffled",
            eval_lengths=self.eval_lengths,
        )

    def settings(self) -> dict[str, Any]:
        """Everything that determines this case's result, as plain data."""
        s = self.suite
        control = {"control": True, "trained_cell": self.trained_cell} if self.control else {}
        evaluated = {"eval_lengths": list(self.eval_lengths)} if self.eval_lengths else {}
        return {
            **control,
            **evaluated,
            "suite": s.name,
            "task": s.meta.task,
            "task_params": dict(s.task.values),
            "cell": self.cell,
            "length": self.length,
            "seed": s.meta.seed,
            "model": _changed(s.model),
            "train": _changed(s.train),
            "success": _changed(s.success),
            "verdict": _changed(s.verdict),
        }

    def config_hash(self) -> str:
        """A short hash of :meth:`settings`: equal hashes mean comparable results.

        Keys at their default are left out of the settings, so a key added to the
        schema later, with a default that keeps the old behaviour, changes no hash.
        """
        blob = json.dumps(self.settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    """A checked suite file with its profile and the command line's overrides applied."""

    path: Path
    meta: SuiteSection
    task: Task
    model: ModelSection
    train: TrainSection
    success: SuccessSection
    verdict: VerdictSection
    profiles: tuple[str, ...] = ()
    profile: str | None = None
    #: Claims per cell from ``[expect]``; ``strict``: a case that learns where failure is claimed fails.
    claims: dict[str, Claim] = field(default_factory=dict, compare=False)
    strict: bool = False
    #: The resolved configuration, as the file would state it with no defaults left out.
    resolved: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.meta.name

    def cases(self) -> list[Case]:
        """Every (cell, length) of the suite, cell by cell, lengths in the file's order; controls last."""
        cases = [Case(self, cell, length) for cell in self.meta.cells for length in self.meta.lengths]
        return cases + [
            Case(self, control, length, control=True)
            for control in self.meta.controls
            for length in self.meta.lengths
        ]


def resolve_eval_lengths(meta: SuiteSection, length: int) -> tuple[int, ...]:
    """The evaluation lengths of a case trained at ``length``: distinct, ascending, not ``length``."""
    if meta.eval_unit == "multiple":
        resolved = {max(1, round(v * length)) for v in meta.eval_lengths}
    else:
        resolved = {int(v) for v in meta.eval_lengths}
    return tuple(sorted(resolved - {length}))


def _changed(section: Any) -> dict[str, Any]:
    """The keys of a section dataclass whose values differ from the schema's defaults."""
    return {
        f.name: getattr(section, f.name)
        for f in dataclasses.fields(section)
        if f.default is dataclasses.MISSING or getattr(section, f.name) != f.default
    }


def read_toml(path: Path, label: str | None = None) -> dict[str, Any]:
    """The TOML document at ``path``; a syntax error keeps its line and column."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{label or path}: invalid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError([f"{label or path}: cannot read the suite file: {exc}"]) from None


def suite_name(path: Path) -> str:
    """The name a suite file goes by: its ``suite.name``, else its stem (unreadable files: the stem)."""
    try:
        data = read_toml(path)
    except SuiteError:
        return path.stem
    named = data.get("suite", {}).get("name") if isinstance(data.get("suite"), dict) else None
    return named if isinstance(named, str) and named else path.stem


def load_suite(path: str | Path, overrides: Overrides | None = None, label: str | None = None) -> Suite:
    """Read, check and resolve the suite at ``path``.

    Raises :class:`SuiteError` with one line per problem, each naming the
    file (as ``label``, default the path), the key, the value and what is allowed.
    """
    path = Path(path)
    overrides = overrides or Overrides()
    data = read_toml(path, label)
    problems = _Problems(label or path)

    allowed_sections = [*SECTIONS, *FREE_SECTIONS]
    for section, value in data.items():
        if section not in allowed_sections:
            problems.add(f"[{section}]", "unknown section" + _allowed(section, allowed_sections))
        elif not isinstance(value, dict):
            problems.add(section, f"must be a table ([{section}]), got {_show(value)}")
    profiles = data.get("profiles", {}) if isinstance(data.get("profiles"), dict) else {}
    raw_task = data.get("suite", {}).get("task") if isinstance(data.get("suite"), dict) else None
    rejected: set[str] = set()
    for pname, override in profiles.items():
        before = len(problems.lines)
        _check_profile(f"profiles.{pname}", override, problems)
        if isinstance(override, dict) and "task" in override:
            _check_profile_task(f"profiles.{pname}.task", raw_task, override["task"], problems)
        if len(problems.lines) > before:
            rejected.add(pname)

    merged = {
        k: dict(v)
        for k, v in data.items()
        if k in allowed_sections and k not in ("profiles", "expect") and isinstance(v, dict)
    }
    if overrides.profile is not None:
        if overrides.profile not in profiles:
            defined = ", ".join(profiles) or "none"
            problems.add("profiles", f"profile {overrides.profile!r} is not defined; defined: {defined}")
        elif overrides.profile not in rejected and isinstance(profiles[overrides.profile], dict):
            # A broken profile is reported once, as profiles.NAME...; it is not applied.
            for section, values in profiles[overrides.profile].items():
                if isinstance(values, dict):
                    merged.setdefault(section, {}).update(values)
    claims, strict = _check_expect(merged.get("suite", {}), data.get("expect", {}), problems)
    cli = {
        ("suite", "cells"): list(overrides.cells) if overrides.cells else None,
        ("suite", "lengths"): list(overrides.lengths) if overrides.lengths else None,
        ("verdict", "trials"): overrides.trials,
        ("suite", "seed"): overrides.seed,
    }
    for (section, k), value in cli.items():
        if value is not None:
            merged.setdefault(section, {})[k] = value

    sections = {
        section: _build_section(section, cls, merged.get(section, {}), problems)
        for section, cls in SECTIONS.items()
    }
    meta: SuiteSection | None = sections["suite"]
    model: ModelSection | None = sections["model"]
    # Check the task, lengths and cells on their own, so one run lists every problem.
    raw = merged.get("suite", {})
    task = _check_task(raw.get("task"), merged.get("task", {}), problems)
    raw_lengths = raw.get("lengths") if isinstance(raw.get("lengths"), list) else []
    if task is not None:
        for i, length in enumerate(raw_lengths):
            if isinstance(length, int) and not isinstance(length, bool) and length >= 1:
                try:
                    task.check_length(length)
                except TaskError as exc:
                    problems.add(f"suite.lengths[{i}] = {length}", str(exc))
    raw_cells = raw.get("cells") if isinstance(raw.get("cells"), list) else []
    for i, cell in enumerate(raw_cells):
        if not isinstance(cell, str):
            continue
        try:
            if cell in CELLS or task is None or model is None:
                cell_class(cell)
            else:
                check_cell(cell, task.input_size, model.hidden)
        except CellError as exc:
            problems.add(f"suite.cells[{i}] = {_show(cell)}", str(exc))
    problems.raise_any()
    _check_eval_lengths(meta, task, problems)
    problems.raise_any()

    if not meta.name:
        meta = dataclasses.replace(meta, name=path.stem)
    train: TrainSection = sections["train"]
    if train.engine in ("fused", "stepwise"):
        for i, cell in enumerate(meta.cells):
            if not is_builtin(cell):
                problems.add(
                    f"train.engine = {_show(train.engine)}",
                    f"runs the built-in cells only, and suite.cells[{i}] = {_show(cell)} is not one; "
                    "use 'auto' or 'vmap'",
                )
        problems.raise_any()
    success: SuccessSection = sections["success"]
    if not success.metric:
        success = dataclasses.replace(success, metric=task.metric)

    resolved = {
        "suite": dataclasses.asdict(meta),
        "task": dict(task.values),
        "model": dataclasses.asdict(model),
        "train": dataclasses.asdict(sections["train"]),
        "success": dataclasses.asdict(success),
        "verdict": dataclasses.asdict(sections["verdict"]),
    }
    return Suite(
        path=path,
        meta=meta,
        task=task,
        model=model,
        train=sections["train"],
        success=success,
        verdict=sections["verdict"],
        profiles=tuple(profiles),
        profile=overrides.profile,
        claims=claims,
        strict=strict,
        resolved=resolved,
    )


class _Problems:
    """The problems found in one suite file, each as ``FILE: KEY = VALUE: what is allowed``."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{self.path}: {where}: {message}")

    def raise_any(self) -> None:
        if self.lines:
            raise SuiteError(self.lines)


def _check_task(name: Any, params: dict[str, Any], problems: _Problems) -> Task | None:
    """The suite's task with its ``[task]`` parameters, or ``None`` (and a problem) if it has none."""
    if not isinstance(name, str):
        return None  # the schema check reports a missing or non-string task
    try:
        task_cls = task_class(name)
    except TaskError as exc:
        problems.add(f"suite.task = {_show(name)}", str(exc))
        return None
    known = {k: v for k, v in params.items() if k in task_cls.params}
    for unknown in sorted(params.keys() - known.keys()):
        allowed = ", ".join(sorted(task_cls.params)) or "none"
        problems.add(f"task.{unknown}", f"unknown parameter of task {task_cls.name!r}; allowed: {allowed}")
    try:
        return task_cls(**known)
    except TaskError as exc:
        problems.add(exc.where or "[task]", str(exc))
        return None


def _check_eval_lengths(meta: SuiteSection, task: Task, problems: _Problems) -> None:
    """``eval_lengths``: a task that generalises, whole lengths where absolute, lengths it allows."""
    if not meta.eval_lengths:
        return
    where = f"suite.eval_lengths = {_show(list(meta.eval_lengths))}"
    if not task.generalises:
        able = ", ".join(sorted(name for name, cls in TASKS.items() if cls.generalises))
        problems.add(
            where,
            f"task {task.name!r} cannot be evaluated at other lengths: {task.no_generalisation} "
            f"(tasks that can: {able})",
        )
        return
    if meta.eval_unit == "absolute" and any(v != int(v) for v in meta.eval_lengths):
        problems.add(where, "must be whole lengths with suite.eval_unit = 'absolute'")
        return
    for length in meta.lengths:
        for eval_length in resolve_eval_lengths(meta, length):
            try:
                task.check_length(eval_length)
            except TaskError as exc:
                problems.add(where, f"gives length {eval_length} for the trained length {length}: {exc}")
                return


def _check_expect(suite: dict[str, Any], expect: Any, problems: _Problems) -> tuple[dict[str, Claim], bool]:
    """The ``[expect]`` claims; each must be tested by at least one case of the suite."""
    if not isinstance(expect, dict):
        return {}, False  # reported as a section that is not a table
    strict = expect.get("strict", False)
    if not isinstance(strict, bool):
        problems.add(f"expect.strict = {_show(strict)}", "must be true or false")
        strict = False
    cells = suite.get("cells") if isinstance(suite.get("cells"), list) else []
    lengths = (
        [v for v in suite.get("lengths", []) if isinstance(v, int)]
        if isinstance(suite.get("lengths"), list)
        else []
    )
    claims = {}
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
                problems.add(f"{where}.{k}", "unknown key" + _allowed(k, ["learns_up_to", "fails_from"]))
            elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.add(f"{where}.{k} = {_show(v)}", "must be an integer >= 1")
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
        claims[cell] = Claim(up, down)
    return claims, strict


def _check_profile_task(where: str, task: Any, params: Any, problems: _Problems) -> None:
    """A profile's ``task`` table: a table of parameters the suite's task has."""
    if not isinstance(params, dict):
        problems.add(where, f"must be a table of the task's parameters, got {_show(params)}")
        return
    try:
        task_cls = task_class(task) if isinstance(task, str) else None
    except TaskError:
        return  # reported once, as suite.task
    if task_cls is None:
        return
    for key in sorted(params):
        if key not in task_cls.params:
            allowed = ", ".join(sorted(task_cls.params)) or "none"
            problems.add(f"{where}.{key}", f"unknown parameter of task {task_cls.name!r}; allowed: {allowed}")


def _allowed(given: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(given, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; allowed: {', '.join(allowed)}"


def _check_profile(where: str, override: Any, problems: _Problems) -> None:
    if not isinstance(override, dict):
        problems.add(where, "must be a table of overrides, e.g. [profiles.quick] verdict.trials = 10")
        return
    for section, values in override.items():
        if section == "task":
            continue  # the task checks its own parameters once the profile is applied
        if section not in SECTIONS:
            problems.add(f"{where}.{section}", "unknown section" + _allowed(section, list(SECTIONS)))
        elif not isinstance(values, dict):
            problems.add(f"{where}.{section}", f"must be a table of keys, got {values!r}")
        else:
            _check_keys(f"{where}.{section}", SECTIONS[section], values, problems)


def _check_keys(prefix: str, cls: type, values: dict[str, Any], problems: _Problems) -> None:
    fields = keys_of(cls)
    for k, value in values.items():
        if k not in fields:
            problems.add(f"{prefix}.{k}", "unknown key" + _allowed(k, list(fields)))
            continue
        check = fields[k].metadata["check"]
        message = check(value) if check else None
        if message:
            problems.add(f"{prefix}.{k} = {_show(value)}", message)


def _build_section(section: str, cls: type, values: dict[str, Any], problems: _Problems) -> Any:
    """The section's dataclass, or ``None`` when a key of it is wrong (the problems say which)."""
    before = len(problems.lines)
    _check_keys(section, cls, values, problems)
    kwargs = {}
    for k, f in keys_of(cls).items():
        if k in values:
            kwargs[k] = tuple(values[k]) if isinstance(values[k], list) else values[k]
        elif is_required(f):
            problems.add(f"{section}.{k}", "is required: " + f.metadata["doc"])
    return cls(**kwargs) if len(problems.lines) == before else None


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, list, bool)) else repr(value)
