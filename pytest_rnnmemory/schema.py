"""The suite schema: every section and key of a suite file, its default, its rule and its meaning.

This module is the one place where the keys are defined. :mod:`.loading`
reads files against it, the engine and the verdict read the resulting
dataclasses, and the README's key table is checked against it by the tests.
Each section is a frozen dataclass that reads and writes its own JSON (the
``config`` of a report).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import StoredDataError, did_you_mean
from .stored import Fields

Check = Callable[[Any], "str | None"]

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")

#: The largest integer any key takes: a bound that keeps every size finite and every loop short.
MAX_INTEGER = 2**63 - 1
#: Bounds on what one case can ask for; past them a suite is a mistake, not an experiment.
MAX_TRIALS = 100_000
MAX_SEQUENCES = 100_000_000
MAX_EPOCHS = 1_000_000
MAX_HIDDEN = 65_536
MAX_LENGTH = 100_000_000
MAX_BUDGET = 10**12


def key(default: Any = dataclasses.MISSING, *, doc: str, check: Check | None = None) -> Any:
    """A schema key: its default (none for a required key), what it means, and its rule."""
    metadata = {"doc": doc, "check": check}
    if isinstance(default, Mapping):  # a table: each section gets its own, read-only
        return field(default_factory=lambda: MappingProxyType(dict(default)), metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(f: dataclasses.Field) -> Any:
    """A key's default (``dataclasses.MISSING`` for a required key)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def integer(minimum: int, maximum: int = MAX_INTEGER) -> Check:
    """An integer in ``[minimum, maximum]``; the bound is named only where a value passes it."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"must be an integer >= {minimum}"
        if value > maximum:
            return f"must be an integer in [{minimum}, {maximum:_}]"
        return None

    return check


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """A finite number in the interval, its ends open or closed."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    text = f"must be a finite number in {lo}{low:g}, {high:g}{hi}"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return text
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            return text
        return None

    return check


def _plain(value: Any) -> bool:
    """A plain value: a finite number, a string, a boolean, or a list of them."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return isinstance(value, (str, int, bool))


def _arguments(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and _plain(v) for k, v in value.items())


def cell_arguments(value: Any) -> str | None:
    """Constructor arguments: a table of names and plain values, for every one of the user's cells,
    where a key naming a cell (``package.module:Class``) holds a table of that cell's own."""
    if isinstance(value, Mapping) and all(
        _arguments(v) if is_cell_key(k) else isinstance(k, str) and _plain(v) for k, v in value.items()
    ):
        return None
    if isinstance(value, Mapping):
        for key, table in value.items():
            if not is_cell_key(key) and isinstance(table, Mapping):
                return (
                    f"holds a table under {key!r}, which names no cell of yours: a cell's own arguments "
                    'go under its name ("package.module:Class"), and built-in cells take none'
                )
    return (
        "must be a table of names and plain values (finite numbers, strings, booleans, lists), "
        'for every one of your cells, with tables of one cell\'s own under its name ("package.module:Class")'
    )


def is_cell_key(key: Any) -> bool:
    """Whether a key of ``model.cell_args`` names a cell (its arguments' table) rather than an argument."""
    return isinstance(key, str) and ":" in key


def one_of(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        if value not in allowed:
            close = did_you_mean(value.lower(), allowed) if isinstance(value, str) else ""
            return "must be one of " + ", ".join(repr(a) for a in allowed) + close
        return None

    return check


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def name(value: Any) -> str | None:
    if not isinstance(value, str) or not (value == "" or _NAME.match(value)):
        return (
            "must be a name of letters, digits, '_', '.' or '-' that does not start with '.' "
            "(a report's file name), or \"\" for the file's stem"
        )
    return None


def names(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return "must be a non-empty list of names"
    if len(set(value)) != len(value):
        return "must not name anything twice"
    return None


CONTROLS = ("memoryless", "shuffled")


def controls(value: Any) -> str | None:
    if (
        not isinstance(value, (list, tuple))
        or any(v not in CONTROLS for v in value)
        or len(set(value)) != len(value)
    ):
        return "must be a list of distinct controls: " + ", ".join(repr(c) for c in CONTROLS)
    return None


def lengths(value: Any) -> str | None:
    text = f"must be a non-empty list of integers in [1, {MAX_LENGTH:_}]"
    if not isinstance(value, list) or not value:
        return text
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_LENGTH for v in value):
        return text
    if len(set(value)) != len(value):
        return "must not list a length twice"
    return None


def eval_lengths(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)) or any(
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(v)
        or not 0 < v <= MAX_LENGTH
        for v in value
    ):
        return (
            f"must be a list of finite numbers in (0, {MAX_LENGTH:_}] (multiples of the trained length, "
            "or lengths; see suite.eval_unit)"
        )
    if len(set(value)) != len(value):
        return "must not list a length twice"
    return None


#: A device by name: ``cpu``, ``cuda`` or ``cuda:N`` (N without a leading zero, which torch refuses).
_DEVICE_NAME = re.compile(r"cpu|cuda(:(0|[1-9][0-9]*))?")


def is_device_name(value: str) -> bool:
    """Whether ``value`` names a device as torch reads one: ``cpu``, ``cuda`` or ``cuda:N``."""
    return _DEVICE_NAME.fullmatch(value) is not None


@dataclass(frozen=True)
class SuiteSection:
    task: str = key(
        doc="A task of docs/TASKS.md (`latching`, `relay`, `xor_delay`, `addition`, `or`, `recall`, `parity`, `adding`) or `package.module:Class`.",
        check=text,
    )
    cells: tuple[str, ...] = key(
        doc="Cells to test: `rnn`, `lstm`, `gru`, `lstm1997` (see *Cells*) or `package.module:Class`.",
        check=names,
    )
    lengths: tuple[int, ...] = key(
        doc="The lengths to test (what a length means is the task's; see docs/TASKS.md).", check=lengths
    )
    name: str = key(
        "",
        doc="The suite's name, used by `--rnn-suite` and for report files. Default: the file's stem.",
        check=name,
    )
    description: str = key("", doc="One line for the report's title.", check=text)
    seed: int = key(
        0, doc="Root of every trial's seed (with suite, cell, length and trial index).", check=integer(0)
    )
    controls: tuple[str, ...] = key(
        (),
        doc="Controls run beside the cells at every length: `memoryless` (a cell that sees only the current input) and `shuffled` (the suite file's first cell, whichever `--cell` selects, trained and validated on shuffled targets). A control that learns means the criterion is reachable without memory. None of them may also be one of `suite.cells`.",
        check=controls,
    )
    eval_lengths: tuple[float, ...] = key(
        (),
        doc="Length generalisation: evaluate every trained trial at these lengths too, on fresh data (multiples of the trained length, or lengths, see `eval_unit`). For tasks whose rule is the same at every length: `addition`, `xor_delay`, `recall`, `or`, `parity`, `adding`.",
        check=eval_lengths,
    )
    eval_unit: str = key(
        "multiple",
        doc="`multiple`: `eval_lengths` are multiples of the trained length (rounded to the nearest integer); `absolute`: they are lengths.",
        check=one_of("multiple", "absolute"),
    )


@dataclass(frozen=True)
class ModelSection:
    hidden: int = key(
        1, doc="Hidden units per cell; 1 is the classic single-unit experiment.", check=integer(1, MAX_HIDDEN)
    )
    init: str = key(
        "torch",
        doc="Initialisation of the built-in gated cells: `torch` (torch's own, every weight and bias uniform in ±1/sqrt(hidden)) or `chrono` (Tallec & Ollivier 2018; see *Initialisation*). No effect on `rnn`, `lstm1997` (which keeps the paper's), `memoryless` or your own cells.",
        check=one_of("torch", "chrono"),
    )
    forget_bias: float = key(
        0.0,
        doc="Added to the LSTM forget gate's input-side bias after initialisation (Jozefowicz et al. 2015 recommend 1). No effect on other cells.",
        check=number(-100.0, 100.0),
    )
    chrono_tmax: int = key(
        0,
        doc="T_max of `chrono` initialisation, the longest dependency it prepares for; 0 means the case's length.",
        check=integer(0, MAX_LENGTH),
    )
    cell_args: Mapping[str, Any] = key(
        {},
        doc="Keyword arguments for your own cells' constructors, as a table (`{ dropout = 0.0 }`): each is called as `Cell(input_size, hidden_size, **cell_args)`. A key naming one of the suite's cells holds that cell's own, added to the others (`{ \"mycells:A\" = { depth = 2 } }`); built-in cells take none.",
        check=cell_arguments,
    )

    @property
    def shared_args(self) -> dict[str, Any]:
        """The constructor arguments for every one of the user's cells (no cell's own)."""
        return {k: v for k, v in self.cell_args.items() if not is_cell_key(k)}

    def args_for(self, cell: str) -> dict[str, Any]:
        """The constructor arguments of ``cell``: those for every cell, then the cell's own."""
        return {**self.shared_args, **self.cell_args.get(cell, {})}


@dataclass(frozen=True)
class TrainSection:
    samples: int = key(
        2000,
        doc="Training sequences per trial, generated from the trial's own stream.",
        check=integer(1, MAX_SEQUENCES),
    )
    val_samples: int = key(
        1000,
        doc="Validation sequences per trial, generated fresh from a stream of their own.",
        check=integer(1, MAX_SEQUENCES),
    )
    epochs: int = key(
        10,
        doc="Passes over the training sequences, each in a new order per trial.",
        check=integer(1, MAX_EPOCHS),
    )
    batch_size: int = key(16, doc="Sequences per optimizer step.", check=integer(1, MAX_SEQUENCES))
    data: str = key(
        "fixed",
        doc="`fixed`: each trial trains on its `samples` sequences for `epochs` passes. `stream`: fresh sequences for every minibatch from the trial's own stream, `max_sequences` in all (as Hochreiter & Schmidhuber 1997 trained).",
        check=one_of("fixed", "stream"),
    )
    max_sequences: int = key(
        0,
        doc='With `data = "stream"`: the training sequences each trial may see (its budget); required there.',
        check=integer(0, MAX_BUDGET),
    )
    lengths: str = key(
        "fixed",
        doc="Lengths of the training sequences: `fixed` (the case's length L), `up_to` (uniform over the task's shortest length to L, the Chomsky-hierarchy benchmark's curriculum) or `spread` (uniform in [L, L + spread x L], as Hochreiter & Schmidhuber 1997).",
        check=one_of("fixed", "up_to", "spread"),
    )
    spread: float = key(
        0.1,
        doc='With `lengths = "spread"`: how far past L training lengths reach, as a fraction of L.',
        check=number(0.0, 10.0),
    )
    val_lengths: str = key(
        "fixed",
        doc="Lengths of the validation (and test) sequences: `fixed` (the case's length L) or `train` (drawn as the training lengths are).",
        check=one_of("fixed", "train"),
    )
    optimizer: str = key(
        "adam",
        doc="`adam`, `sgd` or `rmsprop` (torch's defaults otherwise).",
        check=one_of("adam", "sgd", "rmsprop"),
    )
    lr: float = key(0.05, doc="Learning rate.", check=number(0.0, 1e3, low_open=True))
    clip: float = key(
        0.0,
        doc="Clip each trial's gradient norm to this value; 0 turns clipping off.",
        check=number(0.0, 1e9),
    )
    stop: str = key(
        "budget",
        doc="`budget`: every trial trains for the whole budget and succeeds when its final validation metric reaches the threshold. `learned`: a trial stops for good once its validation metric reaches the threshold (checked every `eval_every` sequences), and succeeds when its metric on a fresh test set reaches it; the report gives the training sequences each trial needed.",
        check=one_of("budget", "learned"),
    )
    eval_every: int = key(
        0,
        doc='With `stop = "learned"`: training sequences between two checks of the validation metric; 0 means one epoch (`samples`), or a tenth of `max_sequences` with `data = "stream"`.',
        check=integer(0, MAX_SEQUENCES),
    )
    test_samples: int = key(
        0,
        doc='With `stop = "learned"`: fresh test sequences per trial, from a stream of their own, that decide success; 0 means `val_samples`.',
        check=integer(0, MAX_SEQUENCES),
    )
    engine: str = key(
        "auto",
        doc="The scheme that batches a case's trials: `auto` (the fastest measured for the cell and device) or one of the schemes listed under *The engine* below.",
        check=text,
    )

    @property
    def check_interval(self) -> int:
        """Training sequences between two checks of the validation metric under ``stop = "learned"``."""
        if self.eval_every:
            return self.eval_every
        return self.samples if self.data == "fixed" else max(1, self.max_sequences // 10)

    def longest(self, length: int) -> int:
        """The longest sequence this recipe trains on in a case of ``length``."""
        return length + int(self.spread * length) if self.lengths == "spread" else length


@dataclass(frozen=True)
class SuccessSection:
    metric: str = key(
        "",
        doc="`accuracy` (scored steps right) or `sequence_accuracy` (sequences with every scored step right). Default: the task's.",
        check=one_of("", "accuracy", "sequence_accuracy"),
    )
    threshold: float = key(
        0.95,
        doc="A trial succeeds when its validation metric reaches this value.",
        check=number(0.0, 1.0, low_open=True),
    )


@dataclass(frozen=True)
class VerdictSection:
    trials: int = key(30, doc="Independent trials per case.", check=integer(1, MAX_TRIALS))
    p0: float = key(
        0.5,
        doc="`learns` means the success rate is significantly above p0; `fails`, significantly below.",
        check=number(0.0, 1.0, low_open=True, high_open=True),
    )
    alpha: float = key(
        0.05,
        doc="Significance level of each one-sided binomial test, and of the baseline gate; below 0.5.",
        # below 0.5: the interval's level, 1 - 2 alpha, is then above 0, and a report reads it back
        check=number(0.0, 0.5, low_open=True, high_open=True),
    )
    stage: int = key(
        0,
        doc="Curtailment: train this many trials at a time and stop as soon as no outcome of the remaining trials can change the verdict (the verdict is the one all trials would give); 0 trains all at once.",
        check=integer(0, MAX_TRIALS),
    )
    regression_test: str = key(
        "boschloo",
        doc="The gate's one-sided exact test of a drop against the baseline: `boschloo` (more power) or `fisher`.",
        check=one_of("boschloo", "fisher"),
    )


#: What ``[search]`` may vary: the recipe, never the budget or the question.
SEARCHABLE = (
    "train.lr",
    "train.optimizer",
    "train.clip",
    "train.batch_size",
    "model.init",
    "model.forget_bias",
    "model.hidden",
)
#: The most recipes a grid may hold.
MAX_RECIPES = 64


@dataclass(frozen=True)
class SearchSection:
    trials: int = key(
        10,
        doc="The most tuning trials a recipe gets. Tuning trials choose the recipe and never count in the verdict.",
        check=integer(1, MAX_TRIALS),
    )
    scope: str = key(
        "case",
        doc="`case`: a recipe is chosen per cell and length; `cell`: one recipe per cell for all its lengths, by the successes summed over them.",
        check=one_of("case", "cell"),
    )


@dataclass(frozen=True)
class Overrides:
    """What the command line changes in every suite it runs (``None``: keep the suite's)."""

    cells: tuple[str, ...] | None = None
    lengths: tuple[int, ...] | None = None
    trials: int | None = None
    seed: int | None = None
    profile: str | None = None
    #: ``False``: run each suite's base recipe alone, without its ``[search]`` (``--rnn-search=off``).
    search: bool = True


#: The statistics a ``[reference]`` figure may name, each computed over our trials the same way.
STATISTICS = ("mean_sequences", "best_accuracy", "success_rate")


@dataclass(frozen=True)
class ReferenceFigure:
    cell: str = key(doc="The cell of this suite the figure is set beside (one of `suite.cells`).", check=text)
    length: int = key(
        doc="The length of this suite's case the figure is set beside.", check=integer(1, MAX_LENGTH)
    )
    statistic: str = key(
        doc="What the figure is: `mean_sequences` (the mean training sequences to learn, over the trials that learned), `best_accuracy` (the best final metric of `trials` trials) or `success_rate` (the fraction of trials that succeeded).",
        check=one_of(*STATISTICS),
    )
    value: float = key(doc="The source's figure.", check=number(0.0, 1e12))
    trials: int = key(
        doc="The trials (or seeds) the source's figure is over; `best_accuracy` takes the best of this many of ours.",
        check=integer(1, MAX_TRIALS),
    )
    eval_length: int = key(
        0,
        doc="For a figure measured at another length than trained: one of the case's evaluation lengths (`suite.eval_lengths`, the file's or a profile's; checked when the suite loads); 0: the trained length.",
        check=integer(0, MAX_LENGTH),
    )
    differs: str = key(
        "",
        doc="What differs between the source's setup and ours (no forget gate in 1997, fixed against variable length, budget), shown beside the figure whatever the agreement: a figure may agree despite a difference.",
        check=text,
    )


@dataclass(frozen=True)
class ReferenceSection:
    source: str = key(doc="The publication, as the report cites it.", check=text)
    setup: str = key("", doc="The source's setup in a sentence.", check=text)
    figures: tuple[ReferenceFigure, ...] = key(
        (), doc="The source's figures, as `[[reference.figures]]` tables (keys below).", check=None
    )

    def to_json(self) -> dict[str, Any]:
        return section_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> ReferenceSection:
        fields = Fields(data, where)
        figures = (
            fields.objects(
                "figures", lambda figure, at: _section_from_json(ReferenceFigure, Fields(figure, at))
            )
            if fields.has("figures")
            else ()
        )
        plain = {k: v for k, v in fields.data.items() if k != "figures"}
        head = _section_from_json(ReferenceSection, Fields(plain, where))
        return dataclasses.replace(head, figures=figures)


#: ``[reference]`` and each of its ``[[reference.figures]]``: documented and checked like the sections.
REFERENCE: dict[str, type] = {"reference": ReferenceSection, "reference.figures": ReferenceFigure}


#: The sections of a suite file, in the order the README documents them.
SECTIONS: dict[str, type] = {
    "suite": SuiteSection,
    "model": ModelSection,
    "train": TrainSection,
    "success": SuccessSection,
    "verdict": VerdictSection,
    "search": SearchSection,
}

#: Sections whose keys are not fixed by this schema: ``[task]`` belongs to the task,
#: ``[expect]`` holds claims per cell (see :mod:`.gate`), ``[profiles.NAME]`` overrides any key above.
FREE_SECTIONS = ("task", "expect", "profiles", "reference")


def keys_of(section: type) -> dict[str, dataclasses.Field]:
    """The schema keys of one section class, by name."""
    return {f.name: f for f in dataclasses.fields(section)}


def is_required(f: dataclasses.Field) -> bool:
    return default_of(f) is dataclasses.MISSING


def check_value(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` for the key ``f`` (``None``: nothing)."""
    check = f.metadata["check"]
    return check(value) if check else None


def section_json(section: Any) -> dict[str, Any]:
    """A section's keys and values as JSON data (tuples as lists, tables as dicts, sections within
    it, such as ``[[reference.figures]]``, as their own), in the schema's order."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return section_json(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return dict(value)
        return value

    return {f.name: plain(getattr(section, f.name)) for f in dataclasses.fields(section)}


def _section_from_json(cls: type, fields: Fields) -> Any:
    """A section dataclass from its JSON: every key checked by its own rule; missing keys default."""
    known = keys_of(cls)
    for name in fields.data:
        if name not in known:
            raise StoredDataError(f"{fields.at(name)}: not a key of this section")
    values = {}
    for name, f in known.items():
        if not fields.has(name):
            if is_required(f):
                raise StoredDataError(f"{fields.at(name)}: missing")
            continue
        value = fields.raw(name)
        problem = check_value(f, value)
        if problem:
            raise StoredDataError(f"{fields.at(name)} = {value!r}: {problem}")
        values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


#: A grid of recipes: each searched key with its values, in the file's order.
Grid = tuple[tuple[str, tuple[Any, ...]], ...]

_BUDGET = (
    "train.samples",
    "train.val_samples",
    "train.epochs",
    "train.stop",
    "train.eval_every",
    "train.data",
    "train.max_sequences",
)
_QUESTION = ("task", "success", "verdict", "suite")


def check_searched_key(key: str) -> str | None:
    """What is wrong with searching ``key`` (``None``: nothing): it must be one of :data:`SEARCHABLE`."""
    if key in SEARCHABLE:
        return None
    section = key.split(".", 1)[0]
    if key in _BUDGET or key == "train.test_samples":
        why = "the budget is not searched: the largest budget would always win"
    elif section in _QUESTION:
        why = f"[{section}] is not searched: it changes the question, not the recipe"
    else:
        why = "not a searchable key"
    return f"{why}; searchable: {', '.join(SEARCHABLE)}"


def check_searched_value(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the searchable ``key`` (``None``: nothing), by the key's own rule."""
    section, name = key.split(".")
    return check_value(keys_of(SECTIONS[section])[name], value)


def check_grid_axis(key: str, values: Any) -> str | None:
    """What is wrong with ``search."key" = values`` (``None``: nothing)."""
    problem = check_searched_key(key)
    if problem:
        return problem
    if not isinstance(values, list) or not values:
        return "must be a non-empty list of values to try"
    for i, value in enumerate(values):
        problem = check_searched_value(key, value)
        if problem:
            return f"[{i}] = {value!r}: {problem}"
    for j, value in enumerate(values):
        # equal values are one recipe, however written: 1 and 1.0 train alike
        i = next((i for i, earlier in enumerate(values[:j]) if earlier == value), None)
        if i is not None:
            return f"[{j}] = {value!r} equals [{i}] = {values[i]!r}: must not list a value twice"
    return None


def grid_size(grid: Grid) -> int:
    """How many recipes a grid holds: the product of its lists' lengths."""
    return math.prod(len(values) for _, values in grid)


@dataclass(frozen=True)
class SuiteConfig:
    """A suite as it ran: every section resolved, defaults filled in, and the task's parameters."""

    suite: SuiteSection
    task: Mapping[str, float]
    model: ModelSection
    train: TrainSection
    success: SuccessSection
    verdict: VerdictSection
    search: SearchSection = SearchSection()
    #: The recipes ``[search]`` tries (empty: the base recipe alone).
    grid: Grid = ()
    #: The published figures this suite reproduces (``None``: none).
    reference: ReferenceSection | None = None

    def to_json(self) -> dict[str, Any]:
        """Every section and key, in the schema's order (the ``config`` of a JSON report)."""
        return {
            "suite": section_json(self.suite),
            "task": dict(self.task),
            "model": section_json(self.model),
            "train": section_json(self.train),
            "success": section_json(self.success),
            "verdict": section_json(self.verdict),
            "search": {**section_json(self.search), **{key: list(values) for key, values in self.grid}},
            **({"reference": self.reference.to_json()} if self.reference else {}),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "config") -> SuiteConfig:
        """Read what :meth:`to_json` wrote; :class:`.StoredDataError` names a key that is wrong."""
        fields = Fields(data, where)
        raw_search = fields.mapping("search") if fields.has("search") else {}
        grid = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in raw_search.items() if "." in k)
        for key, values in raw_search.items():
            if "." in key:
                problem = check_grid_axis(key, values)
                if problem:
                    raise StoredDataError(f"{fields.at('search')}.{key}: {problem}")
        plain = {k: v for k, v in raw_search.items() if "." not in k}
        sections = {
            name: _section_from_json(
                section, Fields(plain, fields.at(name)) if name == "search" else fields.fields(name)
            )
            for name, section in SECTIONS.items()
            if name != "search" or fields.has("search")
        }
        task = fields.mapping("task") if fields.has("task") else {}
        for name, value in task.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise StoredDataError(f"{fields.at('task')}.{name}: expected a number, got {value!r}")
        reference = (
            ReferenceSection.from_json(fields.raw("reference"), fields.at("reference"))
            if fields.has("reference")
            else None
        )
        return cls(task=dict(task), grid=grid, reference=reference, **sections)

    @property
    def controls(self) -> tuple[str, ...]:
        return self.suite.controls
