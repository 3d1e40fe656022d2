"""The run's options: ``--rnn-*`` on the command line and ``rnn_*`` in the ini file, read and checked once.

Bad values are usage errors that say what is allowed. The result is one
frozen :class:`RunOptions`, kept in ``config.stash``.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from .schema import MAX_INTEGER, MAX_LENGTH, MAX_TRIALS, Overrides, is_device_name
from .suite_files import suite_files


@dataclass(frozen=True)
class RunOptions:
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
    #: Run each suite's ``[search]`` (``--rnn-search=on``, the default) or its base recipe alone.
    search: bool = True
    #: Draw the reports' figures (``--rnn-figures=on``, the default).
    figures: bool = True

    def overrides(self) -> Overrides:
        """The overrides every suite gets."""
        return Overrides(
            cells=self.cells,
            lengths=self.lengths,
            trials=self.trials,
            seed=self.seed,
            profile=self.profile,
            search=self.search,
        )

    def with_device(self, device: str) -> RunOptions:
        """These options with ``device`` resolved (``auto`` -> ``cuda`` or ``cpu``)."""
        return dataclasses.replace(self, device=device)

    @property
    def active(self) -> bool:
        """True when the run was asked for suites by name."""
        return self.selected is not None


OPTIONS = pytest.StashKey[RunOptions]()


def add_options(parser: pytest.Parser) -> None:
    """Register the ``--rnn-*`` options and the ``rnn_*`` ini keys."""
    group = parser.getgroup("rnnmemory", "memory tests for recurrent cells (pytest-rnnmemory)")
    group.addoption(
        "--rnn-suite",
        metavar="NAME[,NAME]",
        help="run these suites (by name, from rnn_suites_dir, or the path of a .toml suite file), "
        "even when no path is given",
    )
    group.addoption(
        "--cell",
        metavar="NAME[,NAME]",
        help="cells to test instead of each suite's: rnn, lstm, gru, lstm1997 or package.module:Class",
    )
    group.addoption("--rnn-length", metavar="L[,L]", help="lengths to test instead of each suite's")
    group.addoption(
        "--rnn-trials", metavar="N", help="trials per case instead of each suite's verdict.trials"
    )
    group.addoption(
        "--rnn-profile",
        metavar="NAME",
        help="apply the suites' [profiles.NAME] overrides (e.g. quick); empty: none, over rnn_profile",
    )
    group.addoption("--rnn-device", metavar="DEVICE", help="auto (CUDA when available), cpu, cuda or cuda:N")
    group.addoption("--rnn-seed", metavar="N", help="root seed instead of each suite's suite.seed")
    group.addoption(
        "--rnn-report-dir",
        metavar="DIR",
        help="where reports are written (default: reports, and reports/PROFILE with --rnn-profile)",
    )
    group.addoption(
        "--rnn-inconclusive",
        choices=("fail", "skip"),
        default=None,
        help="what an inconclusive verdict does to its case: fail (default) or skip",
    )
    group.addoption(
        "--rnn-baseline",
        metavar="PATH",
        help="gate: fail a suite whose success rates dropped significantly since this stored run",
    )
    group.addoption(
        "--rnn-save-baseline",
        metavar="PATH",
        help="store this run's counts as a baseline (cases not run keep their stored entries)",
    )
    group.addoption(
        "--rnn-no-holm",
        action="store_true",
        default=False,
        help="gate: test each case at alpha, without Holm's correction across a suite's cases",
    )
    group.addoption(
        "--rnn-frontier",
        action="store_true",
        default=False,
        help="find each cell's frontier by bisection over its lengths, skipping lengths whose verdict "
        "the others imply (assumes success falls with length)",
    )
    group.addoption(
        "--rnn-rerun",
        action="store_true",
        default=False,
        help="train every case again, even when a stored result of the same case exists",
    )
    group.addoption(
        "--rnn-progress",
        choices=("auto", "on", "off"),
        default=None,
        help="live progress lines of long cases (epoch, trials, elapsed, estimate); auto: on for "
        "--rnn-suite runs, off under -q or pytest-xdist (default: auto)",
    )
    group.addoption(
        "--rnn-search",
        choices=("on", "off"),
        default=None,
        help="on (default): choose each case's recipe from its suite's [search] on tuning trials; "
        "off: run each suite's base recipe alone",
    )
    group.addoption(
        "--rnn-figures",
        choices=("on", "off"),
        default=None,
        help="on (default): draw the reports' figures; off: write the markdown and JSON alone",
    )
    group.addoption(
        "--rnn-cache-dir",
        metavar="DIR",
        help="where finished cases are stored (default: pytest's cache folder, .pytest_cache)",
    )
    parser.addini("rnn_baseline", "baseline file the gate compares with, relative to the rootdir", default="")
    parser.addini("rnn_suites_dir", "folder of suite files, relative to the rootdir", default="suites")
    parser.addini("rnn_suites", "suites to run when --rnn-suite is not given (comma-separated)", default="")
    parser.addini("rnn_cells", "cells to test instead of each suite's (comma-separated)", default="")
    parser.addini("rnn_profile", "profile applied to every suite", default="")
    parser.addini("rnn_device", "auto, cpu, cuda or cuda:N", default="auto")
    parser.addini("rnn_report_dir", "where reports are written, relative to the rootdir", default="reports")
    parser.addini("rnn_inconclusive", "fail or skip", default="fail")
    parser.addini("rnn_progress", "auto, on or off: live progress of long cases", default="auto")
    parser.addini("rnn_search", "on or off: each suite's [search] of recipes", default="on")
    parser.addini("rnn_figures", "on or off: the reports' figures", default="on")


def read_options(config: pytest.Config) -> RunOptions:
    """The options of this run; a bad value is a :class:`pytest.UsageError` that says what is allowed."""
    root = config.rootpath
    suites_dir = (root / config.getini("rnn_suites_dir")).resolve()
    names = _option(config, "rnn_suite", "rnn_suites")
    cells = _option(config, "cell", "rnn_cells")
    inconclusive = config.getoption("rnn_inconclusive") or config.getini("rnn_inconclusive")
    if inconclusive not in ("fail", "skip"):
        raise pytest.UsageError(f"rnn_inconclusive = {inconclusive}: must be fail or skip")
    trials = config.getoption("rnn_trials")
    seed = config.getoption("rnn_seed")
    lengths = config.getoption("rnn_length")
    # an empty --rnn-profile= runs the suites as written, over an ini's rnn_profile
    profile = _option(config, "rnn_profile", "rnn_profile") or None
    if config.getoption("rnn_frontier"):
        _check_frontier(config)
    cell_names = _names(cells, _shown(config, "cell", "rnn_cells")) if cells is not None else None
    if cell_names:
        _check_cells(cell_names, _shown(config, "cell", "rnn_cells"))
    shown_suites = _shown(config, "rnn_suite", "rnn_suites")
    selected = _select(_names(names, shown_suites), suites_dir) if names is not None else None
    running = selected is not None or suites_in_args(config, suites_dir)
    baseline = _baseline_path(config, checked=running)
    if baseline is not None and running:
        _check_distribution(config)
    return RunOptions(
        suites_dir=suites_dir,
        selected=selected,
        cells=cell_names,
        lengths=_lengths(lengths) if lengths is not None else None,
        trials=_count("--rnn-trials", 1, MAX_TRIALS)(trials) if trials is not None else None,
        seed=_count("--rnn-seed", 0, MAX_INTEGER)(seed) if seed is not None else None,
        profile=profile,
        device=_check_device(
            _option(config, "rnn_device", "rnn_device") or "auto", _shown(config, "rnn_device", "rnn_device")
        ),
        report_dir=_report_dir(config, profile, written=running),
        inconclusive=inconclusive,
        baseline=baseline,
        save_baseline=_save_baseline_path(config),
        holm=not config.getoption("rnn_no_holm"),
        cache_dir=_cache_dir(config),
        rerun=config.getoption("rnn_rerun"),
        frontier=config.getoption("rnn_frontier"),
        search=_on_off(config, "rnn_search"),
        figures=_on_off(config, "rnn_figures"),
    )


def suites_in_args(config: pytest.Config, suites_dir: Path) -> bool:
    """Whether the paths on the command line hold suites (:func:`suite_paths_in_args`)."""
    return bool(suite_paths_in_args(config, suites_dir))


def suite_paths_in_args(config: pytest.Config, suites_dir: Path) -> list[Path]:
    """The suite files the paths on the command line hold (or more, never fewer): a ``.toml`` file
    named, and the ``.toml`` files of the suites folder, of a folder within it, or of the suites
    folder under a folder above it (a bare ``pytest`` collects the rootdir)."""
    found: set[Path] = set()
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path.suffix == ".toml" and path.is_file():
            found.add(path)
        elif path.is_dir() and (path == suites_dir or suites_dir in path.parents):
            found.update(path.rglob("*.toml"))
        elif path.is_dir() and path in suites_dir.parents:
            found.update(suites_dir.rglob("*.toml"))
    return sorted(found)


@functools.cache
def resolve_device(value: str) -> str:
    """The device a ``--rnn-device`` value means here; imports torch, so call it only for a suite run."""
    if value == "cpu":
        return value
    import torch  # only once a suite runs: the plugin loads in every pytest run

    from .runtime import cuda_problem

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = cuda_problem(value)
    if problem is not None:
        raise pytest.UsageError(f"--rnn-device={value}: {problem}; use cpu or auto")
    return value


def _on_off(config: pytest.Config, name: str) -> bool:
    value = config.getoption(name) or config.getini(name)
    if value not in ("on", "off"):
        raise pytest.UsageError(f"{name} = {value}: must be on or off")
    return value == "on"


def _names(value: str, shown: str) -> tuple[str, ...]:
    """The comma-separated names of a setting as written (``shown``); an empty one is an error."""
    names = tuple(v.strip() for v in value.split(","))
    if not all(names):
        raise pytest.UsageError(f"{shown}: expected a comma-separated list of names, without empty ones")
    return names


def _lengths(value: str) -> tuple[int, ...]:
    allowed = f"must be integers in [1, {MAX_LENGTH:_}], comma-separated (e.g. 5,20,50)"
    try:
        lengths = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise pytest.UsageError(f"--rnn-length={value}: {allowed}") from None
    if not 1 <= min(lengths) <= max(lengths) <= MAX_LENGTH:
        raise pytest.UsageError(f"--rnn-length={value}: {allowed}")
    return lengths


def _count(option: str, minimum: int, maximum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if not minimum <= number <= maximum:
            raise pytest.UsageError(f"{option}={value}: must be an integer in [{minimum}, {maximum:_}]")
        return number

    return parse


def _check_distribution(config: pytest.Config) -> None:
    """A gated run under pytest-xdist keeps each suite file on one worker: its gate item compares
    every case of the suite, and sees only its own worker's results."""
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    dist = getattr(config.option, "dist", "no")
    if dist not in ("loadfile", "loadscope", "no"):  # loadscope: a suite file is one scope
        given = config.getoption("rnn_baseline")
        shown = f"--rnn-baseline={given}" if given else f"rnn_baseline = {config.getini('rnn_baseline')}"
        raise pytest.UsageError(
            f"{shown} under pytest-xdist with --dist {dist}: a suite's gate compares all its "
            "cases and sees only its own worker's; run with --dist loadfile, which keeps a suite file "
            "on one worker"
        )


def _check_frontier(config: pytest.Config) -> None:
    """``--rnn-frontier`` skips the lengths a cell's other verdicts imply: no baseline comes from
    such a run, and none gates it."""
    skips = "--rnn-frontier skips the lengths a cell's other verdicts imply"
    if config.getoption("rnn_baseline") or config.getini("rnn_baseline"):
        raise pytest.UsageError(
            f"{skips}, and the gate (--rnn-baseline) compares every case it selects: pass one or the other"
        )
    if config.getoption("rnn_save_baseline"):
        raise pytest.UsageError(
            f"{skips}, and a baseline saved from it (--rnn-save-baseline) would hold none of them for "
            "later runs to compare: pass one or the other"
        )


def _check_device(value: str, shown: str) -> str:
    if value != "auto" and not is_device_name(value):
        raise pytest.UsageError(f"{shown}: must be auto, cpu, cuda or cuda:N")
    return value


def _shown(config: pytest.Config, name: str, ini: str) -> str:
    """A setting as the user wrote it: the option, else the ini key."""
    given = config.getoption(name)
    return f"--{name.replace('_', '-')}={given}" if given is not None else f"{ini} = {config.getini(ini)}"


def _check_cells(names: tuple[str, ...], shown: str) -> None:
    from .cells import cell_class  # imports torch: only when cells are named
    from .errors import CellError

    for cell in names:
        try:
            cell_class(cell)
        except CellError as exc:
            raise pytest.UsageError(f"{shown}: {exc}") from None


def _select(names: tuple[str, ...], suites_dir: Path) -> tuple[Path, ...]:
    known = suite_files(suites_dir)
    chosen = []
    for name in names:
        if name in known and len(known[name]) > 1:
            files = ", ".join(str(path) for path in known[name])
            raise pytest.UsageError(
                f"--rnn-suite: {name!r} names two suite files: {files}; give each its own suite.name"
            )
        if name in known:
            chosen.append(known[name][0].resolve())
        elif name.endswith(".toml") and Path(name).is_file():
            chosen.append(Path(name).resolve())
        elif name.endswith(".toml") or "/" in name or "\\" in name:
            raise pytest.UsageError(
                f"--rnn-suite: no suite file {name!r} (from {Path.cwd()}); a suite is a name of "
                f"the suites folder ({', '.join(known) or 'none'}) or the path of a .toml file"
            )
        else:
            empty = "does not exist" if not suites_dir.is_dir() else "has no *.toml files"
            listed = ", ".join(known) or f"none: {suites_dir} (rnn_suites_dir) {empty}"
            hint = _shipped_hint(name, suites_dir)
            raise pytest.UsageError(f"--rnn-suite: unknown suite {name!r}; known suites: {listed}{hint}")
    return tuple(chosen)


def _shipped_hint(name: str, suites_dir: Path) -> str:
    """Where the suites that come with the project are, for a run from another folder: a name is
    looked for in that run's own suites folder, a shipped suite is named by its path."""
    shipped = Path(__file__).resolve().parent.parent / "suites"  # a checkout's (or editable install's)
    if shipped == suites_dir:
        return ""
    if not shipped.is_dir():
        return (
            "; the suites shipped with pytest-rnnmemory are in the suites/ folder of its repository: "
            "name one by path, --rnn-suite=path/to/suites/latching.toml"
        )
    files = suite_files(shipped)
    if name in files:
        return (
            f"; {name!r} is a suite shipped with pytest-rnnmemory, in its suites folder "
            f"{shipped}: name it by path, --rnn-suite={_pasted(files[name][0])}"
        )
    return (
        f"; the suites shipped with pytest-rnnmemory are in its suites folder {shipped} "
        f"({', '.join(files) or 'none'}): name one by path, --rnn-suite={_pasted(shipped / 'latching.toml')}"
    )


def _pasted(path: Path, here: Path | None = None) -> str:
    """``path`` relative to ``here`` (the current folder) where it lies under it, else in full."""
    here, resolved = (here or Path.cwd()).resolve(), path.resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)


def shown_path(config: pytest.Config, path: Path) -> str:
    """``path`` as the user can paste it where pytest runs (a given ``--rnn-report-dir`` is read
    there): relative to the current directory where it lies under it, else in full."""
    return _pasted(path, config.invocation_params.dir)


def _option(config: pytest.Config, name: str, ini: str | None = None) -> str | None:
    value = config.getoption(name)
    if value is None and ini is not None:
        value = config.getini(ini) or None
    return value


def _path_option(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption(name)
    return Path(value).resolve() if value else None


def _report_dir(config: pytest.Config, profile: str | None, *, written: bool) -> Path:
    """Where reports go: a profile's run in a folder of its own (a quick run must not replace the
    full run's reports), unless ``--rnn-report-dir`` names one. A file in the way, or a folder that
    cannot be written where suites run (``written``), is a usage error now, not after the training."""
    given = config.getoption("rnn_report_dir")
    folder = config.getini("rnn_report_dir")
    if profile and not given:
        folder = str(Path(folder) / profile)
    path = Path(given).resolve() if given else config.rootpath / folder
    shown = f"--rnn-report-dir={given}" if given else f"rnn_report_dir = {folder}"
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{shown}: {path} is a file, not a folder")
    if written:
        _check_writable(path, shown)
    return path


def _cache_dir(config: pytest.Config) -> Path | None:
    """Where ``--rnn-cache-dir`` stores finished cases: a folder that can be written, checked before
    anything trains."""
    path = _path_option(config, "rnn_cache_dir")
    if path is not None:
        shown = f"--rnn-cache-dir={config.getoption('rnn_cache_dir')}"
        if path.exists() and not path.is_dir():
            raise pytest.UsageError(f"{shown}: {path} is a file, not a folder")
        _check_writable(path, shown)
    return path


def _save_baseline_path(config: pytest.Config) -> Path | None:
    """Where ``--rnn-save-baseline`` writes, checked before anything trains."""
    path = _path_option(config, "rnn_save_baseline")
    if path is None:
        return None
    shown = f"--rnn-save-baseline={config.getoption('rnn_save_baseline')}"
    if path.is_dir():
        raise pytest.UsageError(f"{shown}: {path} is a folder; give a JSON file")
    if path.exists():
        from .gate import BaselineError, load_baseline  # scipy: only for a baseline to update

        try:
            load_baseline(path)
        except BaselineError as exc:
            raise pytest.UsageError(
                f"{shown}: {path} exists and is not a baseline this version can update ({exc}); "
                "remove it or give another path"
            ) from None
    _check_writable(path.parent, shown)
    return path


def _check_writable(folder: Path, shown: str) -> None:
    """A file can be written in ``folder``, or, where it does not exist yet, in the nearest folder
    above it (where it will be made): tried with a temporary file, which is removed."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise pytest.UsageError(f"{shown}: {parent} is a file, so {folder} cannot be a folder")
            try:
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as exc:
                raise pytest.UsageError(
                    f"{shown}: cannot write in {parent} ({exc.strerror or exc})"
                ) from None
            return


def _baseline_path(config: pytest.Config, *, checked: bool) -> Path | None:
    """The baseline the gate compares with, read now where suites run (``checked``): a run of a
    project's other tests does not need it."""
    path = _path_option(config, "rnn_baseline")
    if path is None and config.getini("rnn_baseline"):
        path = config.rootpath / config.getini("rnn_baseline")
    if path is not None and checked:
        from .gate import BaselineError, load_baseline  # scipy: only for a gated run

        try:
            load_baseline(path)
        except BaselineError as exc:
            raise pytest.UsageError(f"--rnn-baseline: {exc}") from None
    return path
