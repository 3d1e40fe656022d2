"""The pytest hooks: options, suite selection, collection, result gathering and the report.

This module loads in every pytest run of an environment where the package is
installed, so it imports torch and the engine only when a suite is collected.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .settings import SETTINGS, Settings, resolve_device

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
RUN_LOG = pytest.StashKey["RunLog"]()
#: Set when this plugin switched live logging on, for its progress lines only.
PROGRESS_ONLY = pytest.StashKey[bool]()


def _names(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise pytest.UsageError(f"expected a comma-separated list of names, got {value!r}")
    return names


def _lengths(value: str) -> tuple[int, ...]:
    try:
        lengths = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise pytest.UsageError(
            f"--rnn-length={value}: must be integers >= 1, comma-separated (e.g. 5,20,50)"
        ) from None
    if not lengths or min(lengths) < 1:
        raise pytest.UsageError(f"--rnn-length={value}: must be integers >= 1, comma-separated")
    return lengths


def _count(option: str, minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise pytest.UsageError(f"{option}={value}: must be an integer >= {minimum}")
        return number

    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rnnmemory", "memory tests for recurrent cells (pytest-rnnmemory)")
    group.addoption(
        "--rnn-suite",
        metavar="NAME[,NAME]",
        help="run these suites (by name, from rnn_suites_dir), even when no path is given",
    )
    group.addoption(
        "--cell",
        metavar="NAME[,NAME]",
        help="cells to test instead of each suite's: rnn, lstm, gru or package.module:Class",
    )
    group.addoption("--rnn-length", metavar="L[,L]", help="lengths to test instead of each suite's")
    group.addoption(
        "--rnn-trials", metavar="N", help="trials per case instead of each suite's verdict.trials"
    )
    group.addoption(
        "--rnn-profile", metavar="NAME", help="apply the suites' [profiles.NAME] overrides (e.g. quick)"
    )
    group.addoption("--rnn-device", metavar="DEVICE", help="auto (CUDA when available), cpu, cuda or cuda:N")
    group.addoption("--rnn-seed", metavar="N", help="root seed instead of each suite's suite.seed")
    group.addoption("--rnn-report-dir", metavar="DIR", help="where reports are written (default: reports)")
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


def _check_device(value: str) -> str:
    if not _DEVICE.match(value):
        raise pytest.UsageError(f"--rnn-device={value}: must be auto, cpu, cuda or cuda:N")
    return value


def _suite_files(suites_dir: Path) -> dict[str, Path]:
    from .suite import suite_name

    files = sorted(suites_dir.glob("*.toml")) if suites_dir.is_dir() else []
    return {suite_name(path): path for path in files}


def _select(names: tuple[str, ...], suites_dir: Path) -> tuple[Path, ...]:
    known = _suite_files(suites_dir)
    chosen = []
    for name in names:
        if name in known:
            chosen.append(known[name].resolve())
        elif name.endswith(".toml") and Path(name).is_file():
            chosen.append(Path(name).resolve())
        else:
            listed = ", ".join(known) or f"none: {suites_dir} has no *.toml files"
            raise pytest.UsageError(f"--rnn-suite: unknown suite {name!r}; known suites: {listed}")
    return tuple(chosen)


def _option(config: pytest.Config, name: str, ini: str | None = None) -> str | None:
    value = config.getoption(name)
    if value is None and ini is not None:
        value = config.getini(ini) or None
    return value


def _read_settings(config: pytest.Config) -> Settings:
    root = config.rootpath
    suites_dir = (root / config.getini("rnn_suites_dir")).resolve()
    names = _option(config, "rnn_suite", "rnn_suites")
    cells = _option(config, "cell", "rnn_cells")
    report_dir = config.getoption("rnn_report_dir")
    inconclusive = config.getoption("rnn_inconclusive") or config.getini("rnn_inconclusive")
    if inconclusive not in ("fail", "skip"):
        raise pytest.UsageError(f"rnn_inconclusive = {inconclusive}: must be fail or skip")
    trials = config.getoption("rnn_trials")
    seed = config.getoption("rnn_seed")
    lengths = config.getoption("rnn_length")
    if cells:
        from .cells import CellError, cell_class

        for cell in _names(cells):
            try:
                cell_class(cell)
            except CellError as exc:
                raise pytest.UsageError(f"--cell: {exc}") from None
    return Settings(
        suites_dir=suites_dir,
        selected=_select(_names(names), suites_dir) if names else None,
        cells=_names(cells) if cells else None,
        lengths=_lengths(lengths) if lengths else None,
        trials=_count("--rnn-trials", 1)(trials) if trials else None,
        seed=_count("--rnn-seed", 0)(seed) if seed is not None else None,
        profile=_option(config, "rnn_profile", "rnn_profile"),
        device=_check_device(_option(config, "rnn_device", "rnn_device") or "auto"),
        report_dir=(Path(report_dir).resolve() if report_dir else root / config.getini("rnn_report_dir")),
        inconclusive=inconclusive,
        baseline=_baseline_path(config),
        save_baseline=_path_option(config, "rnn_save_baseline"),
        holm=not config.getoption("rnn_no_holm"),
        cache_dir=_path_option(config, "rnn_cache_dir"),
        rerun=config.getoption("rnn_rerun"),
        frontier=config.getoption("rnn_frontier"),
    )


def _path_option(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption(name)
    return Path(value).resolve() if value else None


def _baseline_path(config: pytest.Config) -> Path | None:
    path = _path_option(config, "rnn_baseline")
    if path is None and config.getini("rnn_baseline"):
        path = config.rootpath / config.getini("rnn_baseline")
    if path is not None:
        from .gate import BaselineError, load_baseline

        try:
            load_baseline(path)
        except BaselineError as exc:
            raise pytest.UsageError(f"--rnn-baseline: {exc}") from None
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rnnmemory: a memory-task case of pytest-rnnmemory")
    settings = _read_settings(config)
    config.stash[SETTINGS] = settings
    log = config.stash[RUN_LOG] = RunLog(config)
    config.pluginmanager.register(log, "rnnmemory-runlog")
    if settings.profile and settings.selected:
        _check_profile(settings)
    _live_progress(config, settings)
    if settings.selected:
        # Fail early on a device that is not here, before any suite is collected.
        config.stash[SETTINGS] = settings = settings.with_device(resolve_device(settings.device))
        # On pytest-xdist workers too: they get no paths from the controller when the
        # user gave none, and would collect the testpaths instead.
        _add_suite_args(config, settings.selected)


def _live_progress(config: pytest.Config, settings: Settings) -> None:
    """Show the progress lines of :mod:`.progress` live, through pytest's own live logging.

    pytest's live logging writes each line on a line of its own, in a section
    of the test's output, and suspends output capturing around it, so progress
    never garbles the progress dots or the verbose status. When the user turned
    live logging on, it is left as it is; otherwise it is switched on at INFO
    and filtered to this package's logger (see :meth:`RunLog.pytest_sessionstart`).
    """
    mode = config.getoption("rnn_progress") or config.getini("rnn_progress")
    if mode not in ("auto", "on", "off"):
        raise pytest.UsageError(f"rnn_progress = {mode}: must be auto, on or off")
    if mode == "auto":
        # Live logging lists every test by name, so auto is on for runs of suites named
        # with --rnn-suite only, not for a project's ordinary tests. Under pytest-xdist
        # the workers' log lines never reach the terminal live.
        distributed = hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", None))
        quiet = config.get_verbosity() < 0
        mode = "on" if settings.selected and not quiet and not distributed else "off"
    user_set = config.getoption("log_cli_level", None) is not None or config.getini("log_cli")
    if mode == "on" and not user_set:
        # The logging plugin reads this in its own (trylast) pytest_configure, after this one.
        config.option.log_cli_level = "INFO"
        if config.getoption("log_cli_format", None) is None:
            config.option.log_cli_format = "%(message)s"
        config.stash[PROGRESS_ONLY] = True


def _check_profile(settings: Settings) -> None:
    from .errors import SuiteError
    from .suite import read_toml

    defined: set[str] = set()
    for path in settings.selected or ():
        try:
            profiles = read_toml(path).get("profiles", {})
        except SuiteError:
            continue
        if isinstance(profiles, dict):
            defined.update(profiles)
    if settings.profile not in defined:
        raise pytest.UsageError(
            f"--rnn-profile: unknown profile {settings.profile!r}; "
            f"the selected suites define: {', '.join(sorted(defined)) or 'none'}"
        )


def _add_suite_args(config: pytest.Config, paths: tuple[Path, ...]) -> None:
    """Let ``--rnn-suite`` run suites with no path given, and beside any paths that are."""
    wanted = [str(p) for p in paths]
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = wanted
        return
    given = [Path(a.split("::")[0]).resolve() for a in config.args]
    for path in paths:
        if not any(path == g or g in path.parents for g in given):
            config.args.append(str(path))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    settings = config.stash.get(SETTINGS, None)
    if settings is None or (not settings.active and not _suites_in_args(config, settings)):
        return None
    parts = [f"device={resolve_device(settings.device)}"]
    for label, value in (
        ("cells", settings.cells and ",".join(settings.cells)),
        ("lengths", settings.lengths and ",".join(map(str, settings.lengths))),
        ("trials", settings.trials),
        ("seed", settings.seed),
        ("profile", settings.profile),
    ):
        if value is not None and value != "":
            parts.append(f"{label}={value}")
    parts.append(f"reports={settings.report_dir}")
    return ["rnnmemory: " + ", ".join(parts)]


def _suites_in_args(config: pytest.Config, settings: Settings) -> bool:
    return any(
        settings.suites_dir == Path(a.split("::")[0]).resolve()
        or settings.suites_dir in Path(a.split("::")[0]).resolve().parents
        for a in config.args
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix != ".toml":
        return None
    settings: Settings = parent.config.stash[SETTINGS]
    resolved = file_path.resolve()
    if settings.selected is not None:
        if resolved not in settings.selected:
            return None
    elif settings.suites_dir not in resolved.parents:
        return None
    from .items import SuiteFile

    return SuiteFile.from_parent(parent, path=file_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    record = getattr(item, "record", None)
    if call.when == "call" and record is not None:
        # Travels to the xdist controller with the report (plain built-in types only).
        report.rnnmemory = record
    implied = getattr(item, "implied", None)
    if call.when == "call" and implied is not None:
        report.rnnmemory_implied = implied
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash.get(SETTINGS, None)
    if settings is None or not settings.frontier:
        return
    from .items import CaseItem
    from .results import bisection_order

    # Each cell's lengths in bisection order, in the places its cases held.
    groups: dict[tuple[str, str], list[CaseItem]] = {}
    for item in items:
        if isinstance(item, CaseItem) and not item.case.control:
            groups.setdefault((item.case.suite.name, item.case.cell), []).append(item)
    for group in groups.values():
        by_length = {item.case.length: item for item in group}
        ordered = [by_length[length] for length in bisection_order(sorted(by_length))]
        slots = iter(ordered)
        for index, item in enumerate(items):
            if item in group:
                items[index] = next(slots)


class RunLog:
    """This run's suites: the cases selected, the records that came back, the reports written.

    Registered as a plugin of its own because ``pytest_runtest_logreport``
    receives no config; it lives in ``config.stash`` too.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.runs: dict = {}
        self.written: list[Path] = []
        self.baseline_saved: tuple[Path, int] | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.config.stash.get(PROGRESS_ONLY, False):
            return
        import logging

        from .progress import LOG

        handler = getattr(self.config.pluginmanager.get_plugin("logging-plugin"), "log_cli_handler", None)
        if handler is not None:
            handler.addFilter(logging.Filter(LOG.name))  # the user's own INFO logs stay off the terminal

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Note every selected case, so the report shows those that never finish as missing."""
        from .items import CaseItem
        from .results import suite_meta

        for item in session.items:
            if isinstance(item, CaseItem):
                run = self._run(suite_meta(item.case.suite, self.config.rootpath))
                run.expected.append((item.case.cell, item.case.length))

    def _run(self, meta: dict):
        from .results import SuiteRun

        if meta["name"] not in self.runs:
            self.runs[meta["name"]] = SuiteRun(**meta, expected=[])
        return self.runs[meta["name"]]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        implied = getattr(report, "rnnmemory_implied", None)
        if implied is not None:
            run = self._run(implied["suite_meta"])
            case = (implied["cell"], implied["length"])
            if case not in run.expected:
                run.expected.append(case)
            run.implied[case] = implied
        record = getattr(report, "rnnmemory", None)
        if record is None or report.when != "call":
            return
        # Under pytest-xdist the controller collects nothing: the suite comes with the record.
        run = self._run(record["suite_meta"])
        case = (record["cell"], record["length"])
        if case not in run.expected:
            run.expected.append(case)
        run.records[case] = record
        run.wall_s += record["wall_s"]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or not self.runs or self.config.option.collectonly:
            return  # only the controller writes reports, and only for a run that ran
        from .report import write_reports
        from .results import environment

        settings: Settings = self.config.stash[SETTINGS]
        env = environment(resolve_device(settings.device))
        if settings.baseline is not None:
            from .gate import load_baseline

            baseline = load_baseline(settings.baseline)
            for run in self.runs.values():
                run.judge(baseline, holm=settings.holm)
        for run in self.runs.values():
            self.written += write_reports(run, settings.report_dir, env)
        if settings.save_baseline is not None:
            from .gate import save_baseline

            records = [r for run in self.runs.values() for r in run.records.values()]
            count = save_baseline(settings.save_baseline, records, env)
            self.baseline_saved = (settings.save_baseline, count)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.runs or hasattr(self.config, "workerinput") or self.config.option.collectonly:
            return
        from .report import terminal_table
        from .results import display_path

        terminalreporter.section("rnnmemory capability")
        for run in self.runs.values():
            metric = run.config["success"]["metric"]
            terminalreporter.write_line(f"{run.name} ({run.task}, {metric})")
            terminalreporter.write_line(terminal_table(run))
            for line in run.gate_lines():
                terminalreporter.write_line(line)
            if run.missing:
                missing = ", ".join(f"{c}-L{n}" for c, n in run.missing)
                terminalreporter.write_line(f"missing: {missing}")
            cached = [f"{c}-L{n}" for c, n in run.ordered_cases if run.records.get((c, n), {}).get("cached")]
            if cached:
                terminalreporter.write_line(
                    f"from earlier runs (stored results; --rnn-rerun trains again): {', '.join(cached)}"
                )
            terminalreporter.write_line("")
        for path in self.written:
            terminalreporter.write_line(f"report written: {display_path(path, self.config.rootpath)}")
        if self.baseline_saved is not None:
            path, count = self.baseline_saved
            terminalreporter.write_line(
                f"baseline written: {display_path(path, self.config.rootpath)} ({count} cases from this run)"
            )
