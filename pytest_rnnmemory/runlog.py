"""This run's suites, as a pytest plugin object: cases selected, records received, reports written.

Registered for every pytest run, but it imports the statistics and the
reports only inside hooks that run once a suite is collected: the plugin
loads in every pytest run of an environment where the package is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .options import OPTIONS, RunOptions, resolve_device, shown_path, suite_paths_in_args

if TYPE_CHECKING:
    from .gate import Baseline
    from .records import CaseRecord, ImpliedVerdict, SuiteMeta
    from .results import SuiteRun

RUN_LOG = pytest.StashKey["RunLog"]()
#: Set when this plugin switched live logging on, for its progress lines only.
PROGRESS_ONLY = pytest.StashKey[bool]()

#: The attributes of a test report that carry a case's result, or the error it raised, to the
#: pytest-xdist controller; and, with a worker's first case, the cases the run selected.
RECORD, IMPLIED, ERROR = "rnnmemory", "rnnmemory_implied", "rnnmemory_error"
EXPECTED = "rnnmemory_expected"
#: Set on a pytest-xdist worker once it has sent the selected cases.
EXPECTED_SENT = pytest.StashKey[bool]()


class RunLog:
    """This run's suites: the cases selected, the records that came back, the reports written.

    Registered as a plugin of its own because ``pytest_runtest_logreport``
    receives no config; it lives in ``config.stash`` too.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.runs: dict[str, SuiteRun] = {}
        self.written: list[Path] = []
        #: Report files that could not be written, each with why.
        self.unwritten: list[tuple[Path, str]] = []
        #: Lines about reports kept as they were, or set aside because they could not be read.
        self.notes: list[str] = []
        #: Ctrl-C came while a report's figures were drawn: later reports are written without them
        self.figures_interrupted = False
        self.baseline_saved: tuple[Path, int] | None = None
        self._baseline: Baseline | None = None
        #: Each suite's report as written: this run's cases, and an earlier run's where it did not run them.
        self.shown: dict[str, SuiteRun] = {}

    @property
    def options(self) -> RunOptions:
        return self.config.stash[OPTIONS]

    def baseline(self) -> Baseline:
        """The baseline of ``--rnn-baseline``, read once per run."""
        if self._baseline is None:
            from .gate import load_baseline

            self._baseline = load_baseline(self.options.baseline)
        return self._baseline

    def run_of(self, meta: SuiteMeta) -> SuiteRun:
        """The results of the suite ``meta`` describes, created at its first case."""
        from .results import SuiteRun

        if meta.name not in self.runs:
            self.runs[meta.name] = SuiteRun(meta)
        return self.runs[meta.name]

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._import_torch_in_the_xdist_controller()
        if not self.config.stash.get(PROGRESS_ONLY, False):
            return
        from .progress import LOG

        handler = getattr(self.config.pluginmanager.get_plugin("logging-plugin"), "log_cli_handler", None)
        if handler is not None:
            handler.addFilter(logging.Filter(LOG.name))  # the user's own INFO logs stay off the terminal

    def _import_torch_in_the_xdist_controller(self) -> None:
        # pytest-xdist's controller trains nothing, so under -q (no header naming the device) it
        # would import torch, for the environment a report records, only as the run ends: seconds
        # in which a Ctrl-C, with every case finished, would leave no report
        config = self.config
        if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
            return
        if self.options.selected or suite_paths_in_args(config, self.options.suites_dir):
            from . import runtime  # noqa: F401

    def expect(self, meta: SuiteMeta, key: tuple[str, int]) -> None:
        """Note a selected case, so the report shows it as missing if it never finishes."""
        self.run_of(meta).expect(key)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        # Under pytest-xdist the controller collects nothing: the suite comes with the record.
        implied = getattr(report, IMPLIED, None)
        if implied is not None:
            meta, verdict = _implied_from(implied)
            self.run_of(meta).add_implied(verdict)
        record = getattr(report, RECORD, None)
        if record is not None:
            meta, case = _record_from(record)
            self.run_of(meta).add(case)
        error = getattr(report, ERROR, None)
        if error is not None:
            meta, key, raised = _error_from(error)
            self.run_of(meta).add_error(key, raised)
        for meta, keys in _expected_from(getattr(report, EXPECTED, [])):
            for key in keys:
                self.expect(meta, key)

    # first: pytest-xdist's own sessionfinish waits for its workers to shut down, and a Ctrl-C
    # there, with every case finished, would otherwise leave the run's reports and baseline unwritten
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput") or not self.runs or self.config.option.collectonly:
            return  # only the controller writes reports, and only for a run that ran
        from .runtime import environment

        options = self.options
        env = environment(resolve_device(options.device))
        if options.baseline is not None:
            for run in self.runs.values():
                run.judge(self.baseline(), holm=options.holm)
        for run in self.runs.values():
            if not run.ran:
                self.notes.append(f"{run.name}: no case finished or raised, so its report is left as it was")
                continue
            self._write(run, env)
        if options.save_baseline is not None:
            self._save_baseline(options.save_baseline, env, exitstatus)
        if self.figures_interrupted:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        elif self.unwritten and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write(self, run: SuiteRun, env: dict[str, str]) -> None:
        """Write ``run``'s report, completed by the one already there; a file that cannot be
        written is noted, and the rest written all the same."""
        from .errors import FiguresInterrupted, ReportWriteError
        from .report import write_reports

        options = self.options
        try:
            shown = self.shown[run.name] = run.completed_by(self._previous(run))
            self.written += write_reports(
                shown, options.report_dir, env, figures=options.figures, interrupted=self.figures_interrupted
            )
        except ReportWriteError as exc:
            self.written += exc.written
            self.unwritten += exc.unwritten
        except FiguresInterrupted as exc:
            # the cases finished: their reports and the baseline are still written, without figures
            self.written += exc.written
            self.unwritten += exc.unwritten
            if not self.figures_interrupted:
                self.notes.append(
                    f"{run.name}: interrupted while drawing the figures; the markdown and JSON reports "
                    "are written, without figures from there on (python -m pytest_rnnmemory report "
                    f"{shown_path(self.config, options.report_dir / f'{run.name}.json')} draws a report's)"
                )
            self.figures_interrupted = True

    def _save_baseline(self, path: Path, env: dict[str, str], exitstatus: int) -> None:
        """Store this run's counts, unless a selected case did not finish: the run stopped first
        (Ctrl-C, -x), or the case raised. A baseline holds a whole run, never a part of one mixed
        into an earlier one's."""
        from .gate import save_baseline

        why = self._why_unfinished(exitstatus)
        if why is not None:
            self.notes.append(
                f"baseline not written to {shown_path(self.config, path)}: {why}; "
                "store a baseline from a run that finishes what it selects"
            )
            return
        records = [r for run in self.runs.values() for r in run.records.values()]
        self.baseline_saved = (path, save_baseline(path, records, env))

    def _why_unfinished(self, exitstatus: int) -> str | None:
        """Why this run did not finish what it selected, or ``None`` where it did."""
        runs = self.runs.values()
        unfinished = sum(key not in run.errors for run in runs for key in run.missing)
        if unfinished or exitstatus == pytest.ExitCode.INTERRUPTED:
            return f"the run stopped before {unfinished or 'all'} of its selected cases finished"
        raised = [f"{run.name} {c}-L{n}" for run in runs for c, n in run.missing if (c, n) in run.errors]
        if raised:
            return f"{len(raised)} of its selected cases raised an error: {', '.join(raised)}"
        return None

    def _previous(self, run: SuiteRun) -> SuiteRun | None:
        """The report already written for ``run``'s suite, if there is one this version can read."""
        from .errors import StoredDataError
        from .report import read_report

        path = self.options.report_dir / f"{run.name}.json"
        if not path.is_file():
            return None
        try:
            return read_report(path)[0]
        except StoredDataError as exc:
            self._keep_rejected(run, path, exc)
            return None

    def _keep_rejected(self, run: SuiteRun, path: Path, problem: Exception) -> None:
        """Move aside the report at ``path`` that this version rejected, never replace it: a run of
        some cases would shrink it. :class:`.ReportWriteError` where it cannot be moved."""
        from .errors import ReportWriteError

        try:
            aside = set_aside(path)
        except OSError as exc:
            why = (
                f"the earlier report could not be read ({problem}) nor moved aside "
                f"({exc.strerror or exc}); it is left as it was, and this run's report is not written"
            )
            raise ReportWriteError([(path, why)], []) from None
        self.notes.append(
            f"{run.name}: the earlier report could not be read ({problem}); it is kept as "
            f"{shown_path(self.config, aside)}, and this run's report is written in its place"
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.runs or hasattr(self.config, "workerinput") or self.config.option.collectonly:
            return
        from .report import terminal_table

        terminalreporter.section("rnnmemory capability")
        for run in self.runs.values():
            terminalreporter.write_line(f"{run.name} ({run.meta.task}, {run.config.success.metric})")
            terminalreporter.write_line(terminal_table(run, self.shown.get(run.name)))
            for line in run.gate_lines():
                terminalreporter.write_line(line)
            for line in self._case_lines(run):
                terminalreporter.write_line(line)
            terminalreporter.write_line("")
        for path in self.written:
            terminalreporter.write_line(f"report written: {shown_path(self.config, path)}")
        for path, why in self.unwritten:
            shown = shown_path(self.config, path)
            terminalreporter.write_line(f"report file not written: {shown} ({why})", red=True, bold=True)
        if not hasattr(self.config, "cache") and self.options.cache_dir is None:
            terminalreporter.write_line(
                "finished cases were not stored: pytest's cache is off (-p no:cacheprovider); "
                "--rnn-cache-dir=DIR stores them, for later runs to reuse"
            )
        for note in self.notes:
            terminalreporter.write_line(note)
        if self.baseline_saved is not None:
            path, count = self.baseline_saved
            terminalreporter.write_line(
                f"baseline written: {shown_path(self.config, path)} ({count} cases from this run)"
            )

    def _case_lines(self, run: SuiteRun) -> list[str]:
        """The cases of ``run`` that a reader of its table should know about, a line per kind."""
        shown = self.shown.get(run.name)
        kept = [key for key in run.missing if shown is not None and key in shown.records]
        records = run.records_in_order()
        # a compiled cell's fallback note sits in a passing case's log, which pytest never shows
        fell_back = [r.key for r in records if r.scheme == "vmap" and not r.control and not r.cached]
        kinds = [
            ("missing", [key for key in run.missing if key not in kept]),
            ("not finished in this run, the report keeps an earlier run's verdict", kept),
            (
                "not selected, so missing from the report, which replaced one of another configuration",
                [key for key in shown.missing if key not in run.expected]
                if shown is not None and shown.replaced
                else [],
            ),
            (
                "ran under torch.func.vmap, not compiled (the case's log says why)",
                fell_back if run.config.train.engine == "compiled" else [],
            ),
            (
                "from earlier runs (stored results; --rnn-rerun trains again)",
                [r.key for r in records if r.cached],
            ),
        ]
        return [
            f"{label}: "
            + ", ".join(f"{c}-L{n}" + (" (raised an error)" if (c, n) in run.errors else "") for c, n in keys)
            for label, keys in kinds
            if keys
        ]


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.rejected`` (``.rejected.2``, ``.rejected.3``, ... where that is
    taken, so that one set aside before stays); where it went."""
    aside = path.with_name(f"{path.name}.rejected")
    number = 2
    while aside.exists():
        aside = path.with_name(f"{path.name}.rejected.{number}")
        number += 1
    path.rename(aside)
    return aside


def record_payload(meta: SuiteMeta, record: CaseRecord) -> dict[str, Any]:
    """A finished case as plain data for a test report (it travels to the pytest-xdist controller)."""
    return {"suite": meta.to_json(), "record": record.to_json()}


def implied_payload(meta: SuiteMeta, implied: ImpliedVerdict) -> dict[str, Any]:
    return {"suite": meta.to_json(), "implied": implied.to_json()}


def error_payload(meta: SuiteMeta, key: tuple[str, int], error: BaseException) -> dict[str, Any]:
    """A case that raised, as plain data for a test report: the first line of what it raised."""
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    shown = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return {"suite": meta.to_json(), "cell": key[0], "length": key[1], "error": shown}


def expected_payload(runs: Iterable[SuiteRun]) -> list[dict[str, Any]]:
    """The cases each suite's run selected (as a worker's collection noted them), as plain data: a
    pytest-xdist controller collects nothing, and without them a case that never ran would not
    show as missing there."""
    return [{"suite": run.meta.to_json(), "cases": [[c, n] for c, n in run.expected]} for run in runs]


def _expected_from(payload: list[dict[str, Any]]) -> list[tuple[SuiteMeta, list[tuple[str, int]]]]:
    from .records import SuiteMeta

    return [(SuiteMeta.from_json(entry["suite"]), [(c, n) for c, n in entry["cases"]]) for entry in payload]


def _record_from(payload: dict[str, Any]) -> tuple[SuiteMeta, CaseRecord]:
    from .records import CaseRecord, SuiteMeta

    return SuiteMeta.from_json(payload["suite"]), CaseRecord.from_json(payload["record"])


def _error_from(payload: dict[str, Any]) -> tuple[SuiteMeta, tuple[str, int], str]:
    from .records import SuiteMeta

    return SuiteMeta.from_json(payload["suite"]), (payload["cell"], payload["length"]), payload["error"]


def _implied_from(payload: dict[str, Any]) -> tuple[SuiteMeta, ImpliedVerdict]:
    from .records import ImpliedVerdict, SuiteMeta

    return SuiteMeta.from_json(payload["suite"]), ImpliedVerdict.from_json(payload["implied"], "implied")
