"""One suite's results in one run: the cases asked for, the records that came back, the gate's findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

from .gate import IMPROVED, UNCHANGED, Baseline, Comparison, compare
from .recipes import searches
from .records import CaseKey, CaseRecord, ImpliedVerdict, SuiteMeta, frontier, frontier_text
from .schema import SuiteConfig
from .stats import Verdict


def bisection_order(lengths: list[int]) -> list[int]:
    """Sorted ``lengths`` in the order a bisection visits them: the middle first, then each half's."""
    order: list[int] = []
    spans = [(0, len(lengths) - 1)]
    while spans:
        low, high = spans.pop(0)
        if low > high:
            continue
        middle = (low + high) // 2
        order.append(lengths[middle])
        spans += [(middle + 1, high), (low, middle - 1)]
    return order


def cases_of(config: SuiteConfig) -> list[CaseKey]:
    """Every case a suite so configured has: cells, then controls, each at every length."""
    suite = config.suite
    return [(cell, n) for cell in (*suite.cells, *suite.controls) for n in suite.lengths]


def selection_keys(config: SuiteConfig) -> tuple[str, ...]:
    """The keys of ``[suite]`` that select cases of one experiment: the cells, and the lengths
    unless a cell's recipe is searched over all of them (``search.scope = "cell"``)."""
    searched_over_lengths = searches(config.grid) and config.search.scope == "cell"
    return ("cells",) if searched_over_lengths else ("cells", "lengths")


#: What a suite says about itself without changing a trial: its description, and the published
#: figures its report sets beside its own (``[reference]``), whose text one may correct.
_DESCRIPTIVE = ("description",)


def same_experiment(a: SuiteConfig, b: SuiteConfig) -> bool:
    """Whether two configurations differ at most in which cells and lengths they select (see
    :func:`selection_keys`), and in what describes them (the description, the reference)."""

    def without_selection(config: SuiteConfig) -> dict:
        data = config.to_json()
        selection = (*selection_keys(config), *_DESCRIPTIVE)
        data["suite"] = {k: v for k, v in data["suite"].items() if k not in selection}
        data.pop("reference", None)
        return data

    return without_selection(a) == without_selection(b)


def with_file_selection(meta: SuiteMeta) -> SuiteMeta:
    """``meta`` selecting the suite file's cells and lengths too, where ``--cell`` and
    ``--rnn-length`` selected others (lengths only where they select, see :func:`selection_keys`)."""
    suite, selection = meta.config.suite, selection_keys(meta.config)
    cells = _union(meta.declared_cells, suite.cells)
    lengths = _lengths(meta.declared_lengths, suite.lengths) if "lengths" in selection else suite.lengths
    suite = dataclasses.replace(suite, cells=cells, lengths=lengths)
    return dataclasses.replace(meta, config=dataclasses.replace(meta.config, suite=suite))


def _union(first: tuple, second: tuple) -> tuple:
    return tuple(dict.fromkeys([*first, *second]))


def _lengths(first: tuple[int, ...], second: tuple[int, ...]) -> tuple[int, ...]:
    """Both runs' lengths, ascending, as the report lists them (cells keep the suite's order)."""
    return tuple(sorted({*first, *second}))


@dataclass
class SuiteRun:
    """One suite's results in one pytest run: what was asked for and what came back."""

    meta: SuiteMeta
    #: The (cell, length) cases selected for this run, in order.
    expected: list[CaseKey] = field(default_factory=list)
    records: dict[CaseKey, CaseRecord] = field(default_factory=dict)
    wall_s: float = 0.0
    #: Cases that ``--rnn-frontier`` did not train, with the verdict the others imply.
    implied: dict[CaseKey, ImpliedVerdict] = field(default_factory=dict)
    #: Cases that raised instead of finishing, with the first line of what they raised.
    errors: dict[CaseKey, str] = field(default_factory=dict)
    #: Cases whose verdict (counted or implied) a report keeps from an earlier run, which did
    #: not run them again (see :meth:`completed_by`).
    kept: set[CaseKey] = field(default_factory=set)
    #: Whether this report replaced an earlier one of another configuration (see :meth:`completed_by`).
    replaced: bool = False
    #: The stored run this one was judged against (:meth:`judge`), and what the gate found.
    baseline: Baseline | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    #: Whether the comparisons' p-values were Holm-adjusted (``--rnn-no-holm``: not).
    holm: bool = True
    #: The baseline, the cases and the correction the comparisons were made for.
    _judged: tuple[int, tuple[CaseKey, ...], bool] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def tuning_s(self) -> float | None:
        """Training time of the tuning trials that chose the cases' recipes, summed (outside
        ``wall_s``); ``None`` where none was measured (no search, or a report older than the measure)."""
        measured = [
            r.search.wall_s for r in self.records.values() if r.search and r.search.wall_s is not None
        ]
        return sum(measured) if measured else None

    @property
    def config(self) -> SuiteConfig:
        return self.meta.config

    def expect(self, key: CaseKey) -> None:
        """Note a selected case, so that a run without its result reports it as missing."""
        if key not in self.expected:
            self.expected.append(key)

    def add(self, record: CaseRecord) -> None:
        """A finished case's record (a second record of the same case replaces the first)."""
        self.expect(record.key)
        replaced = self.records.get(record.key)
        self.records[record.key] = record
        self.wall_s += record.wall_s - (replaced.wall_s if replaced else 0.0)

    def add_implied(self, implied: ImpliedVerdict) -> None:
        self.expect(implied.key)
        self.implied[implied.key] = implied

    def add_error(self, key: CaseKey, error: str) -> None:
        """A case that raised instead of finishing, and the first line of what it raised."""
        self.expect(key)
        self.errors[key] = error

    def without_counts(self, key: CaseKey) -> str:
        """Why a case of this run has no counts, as its report's tables say: ``implied`` (by
        ``--rnn-frontier``), ``raised`` or ``did not finish``; empty where it has counts or is no
        case of the run."""
        if key in self.records or key not in self.expected:
            return ""
        if key in self.implied:
            return "implied"
        return "raised" if key in self.errors else "did not finish"

    @property
    def cells(self) -> list[str]:
        """The cells of this run in the suite's order (results may arrive in any order)."""
        present = {c for c, _ in self.expected}
        suite = self.config.suite
        ordered = [c for c in [*suite.cells, *suite.controls] if c in present]
        return ordered + sorted(present - set(ordered))

    @property
    def ordered_cases(self) -> list[CaseKey]:
        """The selected cases, cell by cell in the suite's order, lengths ascending."""
        rank = {c: i for i, c in enumerate(self.cells)}
        return sorted(self.expected, key=lambda case: (rank[case[0]], case[1]))

    @property
    def lengths(self) -> list[int]:
        return sorted({n for _, n in self.expected})

    @property
    def missing(self) -> list[CaseKey]:
        return [c for c in self.ordered_cases if c not in self.records and c not in self.implied]

    @property
    def controls(self) -> list[str]:
        """The controls of this run (they have columns, not frontiers)."""
        return [c for c in self.cells if c in self.config.controls]

    @property
    def ran(self) -> bool:
        """Whether any case of this suite finished (trained, stored or implied) or raised in this run."""
        return bool(self.records or self.implied or self.errors)

    def completed_by(self, previous: SuiteRun | None) -> SuiteRun:
        """This run as its report shows it, so that a partial run never shrinks a report.

        Where ``previous`` (the report already there) ran the same experiment, differing
        at most in the cells and lengths selected, this run's cases replace its cases of
        the same (cell, length) and the others stay. Otherwise this run's report replaces
        it, and every case of the suite that did not run here is listed as missing (where
        it replaces one, the suite file's cases that ``--cell`` or ``--rnn-length`` left out too).
        """
        mergeable = previous is not None and previous.name == self.name
        if not mergeable or not same_experiment(previous.config, self.config):
            meta = self.meta if previous is None else with_file_selection(self.meta)
            shown = SuiteRun(meta, expected=[*self.expected], baseline=self.baseline)
            for key in cases_of(meta.config):
                shown.expect(key)
            shown.replaced, previous = previous is not None, None
        else:
            old, new = previous.config.suite, self.config.suite
            suite = dataclasses.replace(
                new, cells=_union(old.cells, new.cells), lengths=_lengths(old.lengths, new.lengths)
            )
            config = dataclasses.replace(self.config, suite=suite)
            shown = SuiteRun(dataclasses.replace(self.meta, config=config), baseline=self.baseline)
            for key in [*previous.expected, *self.expected]:
                shown.expect(key)
            for key, record in previous.records.items():
                # a case that raised this run shows that, not the verdict of code since changed;
                # one that --rnn-frontier only implied keeps the counts measured before
                if key not in self.records and key not in self.errors:
                    shown.add(record)
            for key, implied in previous.implied.items():
                if key not in self.records and key not in self.implied:
                    shown.add_implied(implied)
        for record in self.records.values():
            shown.add(record)
        for implied in self.implied.values():
            if implied.key not in shown.records:
                shown.add_implied(implied)
        if previous is not None:  # an error of the report before stands for a case not run again
            for key, error in previous.errors.items():
                if key not in self.expected:
                    shown.errors[key] = error
        shown.errors.update(self.errors)
        shown.kept = {key for key in shown.records if key not in self.records}
        shown.kept |= {key for key in shown.implied if key not in self.implied}
        shown.comparisons, shown.holm = list(self.comparisons), self.holm
        return shown

    def records_in_order(self) -> list[CaseRecord]:
        return [self.records[c] for c in self.ordered_cases if c in self.records]

    def judge(
        self, baseline: Baseline, *, holm: bool = True, cases: Collection[CaseKey] | None = None
    ) -> list[Comparison]:
        """Compare this run's records (those of ``cases``, where given) with ``baseline``, once:
        later calls return the same findings."""
        records = [r for r in self.records_in_order() if cases is None or r.key in cases]
        judged = (id(baseline), tuple(r.key for r in records), holm)
        if self._judged != judged:
            verdict = self.config.verdict
            self.baseline, self.holm, self._judged = baseline, holm, judged
            self.comparisons = compare(
                records, baseline, verdict.alpha, test=verdict.regression_test, use_holm=holm
            )
        return self.comparisons

    def frontier(self, cell: str) -> int | None:
        """The largest length that ``cell`` learns among the verdicts here (``None``: none, or it has no
        verdict: see :meth:`has_verdict`)."""
        verdicts = [*self.records.values(), *self.implied.values()]
        return frontier([(v.length, v.verdict) for v in verdicts if v.cell == cell])

    def has_verdict(self, cell: str) -> bool:
        """Whether any case of ``cell`` has a verdict here: without one, its frontier is not "none"."""
        return any(c == cell for c, _ in [*self.records, *self.implied])

    def frontier_text(self, cell: str) -> str:
        """``cell``'s frontier as the reports write it: a length, ``none`` where it learns none, and
        ``not run`` where none of its cases has a verdict (``no verdict, a case raised`` where one raised)."""
        if self.has_verdict(cell):
            return frontier_text(self.frontier(cell))
        return "no verdict, a case raised" if any(c == cell for c, _ in self.errors) else "not run"

    def compared_frontiers(self, cell: str) -> tuple[int | None, int | None] | None:
        """``cell``'s frontier in the baseline and now, both over the cases the gate compared (a case
        not selected, or kept from an earlier run, moved nowhere); ``None``: it compared none of them."""
        if self.baseline is None:
            return None
        lengths = {c.length for c in self.comparisons if c.cell == cell}
        if not lengths:
            return None
        then = [
            (e.length, e.verdict)
            for e in self.baseline.entries.values()
            if e.suite == self.name and e.cell == cell and e.length in lengths
        ]
        now = [(n, self.records[cell, n].verdict) for n in lengths if (cell, n) in self.records]
        return frontier(then), frontier(now)

    def trained_cell(self, record: CaseRecord) -> str:
        """The cell a case trained: its own, or a control's (``shuffled``: the suite file's first;
        in a report written before records named it, the run's first cell, as it was then)."""
        if record.trained_cell is not None:
            return record.trained_cell
        return self.config.suite.cells[0] if record.control and record.cell == "shuffled" else record.cell

    def frontier_drops(self) -> list[tuple[str, int | None, int | None]]:
        """Cells whose frontier moved down since the baseline: (cell, before, now), both over the
        cases the gate compared (:meth:`compared_frontiers`)."""
        drops = []
        for cell in self.cells:
            frontiers = self.compared_frontiers(cell)
            if frontiers is None:
                continue
            before, now = frontiers
            if before is not None and (now is None or now < before):
                drops.append((cell, before, now))
        return drops

    def gate_lines(self) -> list[str]:
        """What the gate found, one line each, worst first (empty without a baseline)."""
        if self.baseline is None:
            return []
        lines = [
            f"FRONTIER DOWN: {cell} learned up to {before} in the baseline, now "
            f"{'no length' if now is None else f'up to {now}'}"
            for cell, before, now in self.frontier_drops()
        ]
        for c in self.comparisons:
            if c.status not in (UNCHANGED, IMPROVED):
                lines.append(f"{c.status.upper()}: {c.describe(self.baseline)}")
        lines += [f"improved: {c.describe(self.baseline)}" for c in self.comparisons if c.status == IMPROVED]
        unchanged = sum(c.status == UNCHANGED for c in self.comparisons)
        lines.append(
            f"baseline {self.baseline.path.name} ({self.baseline.created}): {unchanged} case(s) unchanged"
        )
        selected = set(self.expected)
        left = [(c, n) for s, c, n in self.baseline.entries if s == self.name and (c, n) not in selected]
        if left:
            lines.append(f"{len(left)} case(s) of the baseline not selected in this run, not compared")
        return lines

    def leaky_controls(self) -> dict[str, list[int]]:
        """Controls that learn, with the lengths: the criterion is reachable there without memory."""
        leaky: dict[str, list[int]] = {}
        for (cell, length), r in sorted(self.records.items()):
            if cell in self.controls and r.verdict == Verdict.LEARNS:
                leaky.setdefault(cell, []).append(length)
        return leaky

    @property
    def chance(self) -> dict[int, float]:
        """The task's chance level at each length that has a result, by length ascending."""
        return {n: r.chance for (_, n), r in sorted(self.records.items(), key=lambda item: item[0][1])}
