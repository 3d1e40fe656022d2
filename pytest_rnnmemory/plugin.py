"""The pytest hooks: options, suite selection, collection, result gathering and the report.

This module loads in every pytest run of an environment where the package is
installed, so it imports torch, the engine and the statistics only once a
suite is selected or collected (the imports inside the hooks below).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .options import (
    OPTIONS,
    RunOptions,
    add_options,
    read_options,
    resolve_device,
    suite_paths_in_args,
    suites_in_args,
)
from .runlog import PROGRESS_ONLY, RUN_LOG, RunLog
from .suite_files import is_suite_file, read_toml


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "memory_case: a case or gate of a pytest-rnnmemory suite")
    options = read_options(config)
    config.stash[OPTIONS] = options
    log = config.stash[RUN_LOG] = RunLog(config)
    config.pluginmanager.register(log, "rnnmemory-runlog")
    _check_named_files(config)
    if options.profile:
        given = config.getoption("rnn_profile")
        shown = "--rnn-profile" if given is not None else f"rnn_profile = {options.profile}"
        _check_profile(
            options, [*(options.selected or ()), *suite_paths_in_args(config, options.suites_dir)], shown
        )
    _live_progress(config, options)
    if options.selected:
        # Fail early on a device that is not here, before any suite is collected.
        config.stash[OPTIONS] = options = options.with_device(resolve_device(options.device))
        # On pytest-xdist workers too: they get no paths from the controller when the
        # user gave none, and would collect the testpaths instead.
        _add_suite_args(config, options.selected)


def _check_named_files(config: pytest.Config) -> None:
    """A ``.toml`` file named on the command line is collected as a suite wherever it lies; one that
    holds no ``[suite]`` table is a usage error that says so."""
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if path.suffix == ".toml" and path.is_file() and not is_suite_file(path):
            raise pytest.UsageError(
                f"{arg}: not a suite file: it has no [suite] table (see the README's *Suite files*)"
            )


def _live_progress(config: pytest.Config, options: RunOptions) -> None:
    """Show the progress lines of :mod:`.progress` live, through pytest's own live logging.

    pytest's live logging writes each line on a line of its own, in a section
    of the test's output, and suspends output capturing around it, so progress
    never garbles the progress dots or the verbose status. When the user turned
    live logging on, it is left as it is; otherwise it is switched on at INFO
    and filtered to this package's logger (see :meth:`.RunLog.pytest_sessionstart`).
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
        mode = "on" if options.selected and not quiet and not distributed else "off"
    user_set = config.getoption("log_cli_level", None) is not None or config.getini("log_cli")
    if mode == "on" and not user_set:
        # The logging plugin reads this in its own (trylast) pytest_configure, after this one.
        config.option.log_cli_level = "INFO"
        if config.getoption("log_cli_format", None) is None:
            config.option.log_cli_format = "%(message)s"
        config.stash[PROGRESS_ONLY] = True


def _check_profile(options: RunOptions, suites: list[Path], shown: str) -> None:
    """``--rnn-profile`` (or the ini's ``rnn_profile``, as ``shown`` names the one given) names a
    profile of at least one of the run's suites (a suite that lacks it fails on its own, with the
    profiles it has); a run of no suite is not checked."""
    from .errors import SuiteError

    if not suites:
        return
    defined: set[str] = set()
    for path in suites:
        try:
            profiles = read_toml(path).get("profiles", {})
        except SuiteError:
            continue
        if isinstance(profiles, dict):
            defined.update(profiles)
    if options.profile not in defined:
        raise pytest.UsageError(
            f"{shown}: unknown profile {options.profile!r}; "
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
    options = config.stash.get(OPTIONS, None)
    if options is None or (not options.active and not suites_in_args(config, options.suites_dir)):
        return None
    parts = [f"device={resolve_device(options.device)}"]
    for label, value in (
        ("cells", options.cells and ",".join(options.cells)),
        ("lengths", options.lengths and ",".join(map(str, options.lengths))),
        ("trials", options.trials),
        ("seed", options.seed),
        ("profile", options.profile),
        ("search", None if options.search else "off"),
    ):
        if value is not None and value != "":
            parts.append(f"{label}={value}")
    parts.append(f"reports={options.report_dir}")
    return ["rnnmemory: " + ", ".join(parts)]


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix != ".toml":
        return None
    options: RunOptions = parent.config.stash[OPTIONS]
    resolved = file_path.resolve()
    named = parent.session.isinitpath(file_path)  # named on the command line: a suite wherever it lies
    if options.selected is not None:
        if resolved not in options.selected and not named:
            return None
    elif options.suites_dir not in resolved.parents and not named:
        return None
    from .items import SuiteFile  # the engine and torch: only once a suite is collected

    if parent.config.rootpath not in resolved.parents:
        # pytest names a file outside the rootdir that is itself a given path by nothing at all;
        # its node id keeps the file, as the user can find it from where pytest ran.
        shown = os.path.relpath(resolved, parent.config.invocation_params.dir)
        return SuiteFile.from_parent(parent, path=file_path, nodeid=shown.replace(os.sep, "/"))
    return SuiteFile.from_parent(parent, path=file_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call" and hasattr(item, "case"):
        from .items import report_payloads

        # Travels to the pytest-xdist controller with the report (plain built-in types only).
        for name, payload in report_payloads(item, call).items():
            setattr(report, name, payload)
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    options = config.stash.get(OPTIONS, None)
    if options is None or not options.frontier:
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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note every selected case, so the report shows those that never finish as missing."""
    if not any(hasattr(item, "case") for item in session.items):
        return
    from .items import CaseItem

    log = session.config.stash[RUN_LOG]
    for item in session.items:
        if isinstance(item, CaseItem):
            case = item.case
            log.expect(case.suite.summary(session.config.rootpath), (case.cell, case.length))


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str] | None:
    """Before a long run trains, how long it will take, from rates measured by earlier cases."""
    if not any(hasattr(item, "case") for item in items):
        return None
    from .estimate import ANNOUNCE_S, announce, seconds
    from .items import RATES, CaseItem

    cases = [item for item in items if isinstance(item, CaseItem)]
    pending = [item.case for item in cases if not item.has_stored_result()]
    rates = config.cache.get(RATES, {}) if hasattr(config, "cache") else {}
    options: RunOptions = config.stash[OPTIONS]
    total = seconds(pending, rates, resolve_device(options.device))
    if total is None or total < ANNOUNCE_S:
        return None
    return [announce(total, len(pending), len(cases) - len(pending))]
