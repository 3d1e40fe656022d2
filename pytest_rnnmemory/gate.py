"""The capability gate: a run's counts against the suite's claims and a stored baseline.

Two questions, two mechanisms:

* **Claims** (``[expect]`` in a suite): "rnn learns up to length 20, fails from
  100". A case inside a claim is judged by its own verdict.
* **Baseline** (``--rnn-baseline``): did a cell's success rate drop
  significantly since the stored run? A one-sided exact test on the two
  counts (Boschloo's by default, Fisher's on request), at the suite's alpha,
  with Holm's correction across the compared cases of a suite, so that an
  unchanged cell is flagged in at most alpha of runs per suite.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .errors import RnnMemoryError, StoredDataError
from .records import CaseRecord, counts_from_json, frontier
from .stats import Verdict
from .stored import Fields

BASELINE_KIND = "pytest-rnnmemory baseline"
BASELINE_SCHEMA = 1

REGRESSED, IMPROVED, UNCHANGED = "regressed", "improved", "unchanged"
CHANGED_CONFIG, NOT_IN_BASELINE = "configuration changed", "not in baseline"
TESTS = ("boschloo", "fisher")


class BaselineError(RnnMemoryError):
    """A baseline file that is missing, unreadable or not a baseline."""


@dataclass(frozen=True)
class Claim:
    """What a suite says one cell can do: learn up to a length, fail from a length."""

    learns_up_to: int | None = None
    fails_from: int | None = None

    def expects(self, length: int) -> Verdict | None:
        """``learns``, ``fails`` or ``None`` (no claim) at ``length``."""
        if self.learns_up_to is not None and length <= self.learns_up_to:
            return Verdict.LEARNS
        if self.fails_from is not None and length >= self.fails_from:
            return Verdict.FAILS
        return None

    def describe(self) -> str:
        parts = []
        if self.learns_up_to is not None:
            parts.append(f"learns up to length {self.learns_up_to}")
        if self.fails_from is not None:
            parts.append(f"fails from length {self.fails_from}")
        return " and ".join(parts)


# -- the baseline file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineEntry:
    """One case of a stored run: its counts, its verdict and the configuration it ran under."""

    suite: str
    cell: str
    length: int
    config_hash: str
    k: int
    n: int
    verdict: Verdict
    p0: float
    alpha: float
    #: The recipe the verdict's trials trained with, where the suite searched (else empty).
    recipe: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.suite, self.cell, self.length)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "cell": self.cell,
            "length": self.length,
            "config_hash": self.config_hash,
            "k": self.k,
            "n": self.n,
            "verdict": self.verdict.value,
            "p0": self.p0,
            "alpha": self.alpha,
            **({"recipe": dict(self.recipe)} if self.recipe else {}),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> BaselineEntry:
        f = Fields(data, where)
        suite, cell = f.text("suite"), f.text("cell")
        length, config_hash = f.integer("length", minimum=1), f.text("config_hash")
        k, n, verdict, p0, alpha = counts_from_json(f)
        return cls(
            suite=suite,
            cell=cell,
            length=length,
            config_hash=config_hash,
            k=k,
            n=n,
            verdict=verdict,
            p0=p0,
            alpha=alpha,
            recipe=tuple(f.mapping("recipe").items()) if f.has("recipe") else (),
        )

    @classmethod
    def of(cls, record: CaseRecord) -> BaselineEntry:
        d = record.decision
        return cls(
            record.suite,
            record.cell,
            record.length,
            record.config_hash,
            d.k,
            d.n,
            d.verdict,
            d.p0,
            d.alpha,
            tuple(record.recipe.items()),
        )


@dataclass(frozen=True)
class Baseline:
    """A stored run: per (suite, cell, length), the counts and the configuration hash."""

    path: Path
    created: str
    environment: dict[str, Any]
    entries: dict[tuple[str, str, int], BaselineEntry]

    def frontier(self, suite: str, cell: str) -> int | None:
        return frontier(
            [(e.length, e.verdict) for e in self.entries.values() if e.suite == suite and e.cell == cell]
        )

    def to_report(self, suite: str) -> dict[str, Any]:
        """What a suite's report keeps of this baseline: the file, when it was stored, the suite's cases."""
        cases = [e.to_json() for key, e in sorted(self.entries.items()) if e.suite == suite]
        return {"path": str(self.path), "created": self.created, "cases": cases}

    @classmethod
    def from_report(cls, data: Any, where: str) -> Baseline:
        """A baseline as :meth:`to_report` kept it in a report."""
        f = Fields(data, where)
        entries = {e.key: e for e in f.objects("cases", BaselineEntry.from_json)}
        return cls(Path(f.text("path")), f.text("created"), {}, entries)


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline written by :func:`save_baseline`; :class:`BaselineError` says what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise BaselineError(f"baseline {path} is a folder; give the baseline's JSON file")
    if not path.is_file():
        raise BaselineError(
            f"baseline {path} does not exist; create it from a run you trust with --rnn-save-baseline={path}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BaselineError(f"baseline {path} cannot be read: {exc}") from None
    if isinstance(data, dict) and {"suite", "cases"} <= data.keys() and "kind" not in data:
        raise BaselineError(
            f"{path} is a suite's report, not a baseline: store a baseline from a run you trust "
            "with --rnn-save-baseline=FILE"
        )
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise BaselineError(f'{path} is not a pytest-rnnmemory baseline (no "kind": {BASELINE_KIND!r})')
    if data.get("schema_version") != BASELINE_SCHEMA:
        raise BaselineError(
            f"baseline {path} has schema_version {data.get('schema_version')!r}; "
            f"this version reads {BASELINE_SCHEMA}: save it again with --rnn-save-baseline"
        )
    try:
        fields = Fields(data, "")
        entries: dict[tuple[str, str, int], BaselineEntry] = {}
        for i, entry in enumerate(fields.objects("cases", BaselineEntry.from_json)):
            if entry.key in entries:
                suite, cell, length = entry.key
                raise StoredDataError(f"cases[{i}]: a second entry for {cell} at length {length} of {suite}")
            entries[entry.key] = entry
        created = fields.text("created") if fields.has("created") else "unknown"
        environment = fields.mapping("environment") if fields.has("environment") else {}
    except StoredDataError as exc:
        raise BaselineError(f"baseline {path}: {exc}; save it again with --rnn-save-baseline") from None
    return Baseline(path, created, environment, entries)


def save_baseline(path: str | Path, records: list[CaseRecord], environment: dict[str, Any]) -> int:
    """Store the records' counts in ``path``, keeping the entries of cases this run did not have.

    Returns the number of cases written or replaced.
    """
    path = Path(path)
    entries: dict[tuple[str, str, int], BaselineEntry] = {}
    if path.exists():
        entries = dict(load_baseline(path).entries)
    for r in records:
        entry = BaselineEntry.of(r)
        entries[entry.key] = entry
    data = {
        "kind": BASELINE_KIND,
        "schema_version": BASELINE_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment,
        "cases": [entries[key].to_json() for key in sorted(entries)],
    }
    write_atomic(path, json.dumps(data, indent=1) + "\n")
    return len(records)


# -- the statistics ------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def drop_pvalue(k_now: int, n_now: int, k_base: int, n_base: int, test: str = "boschloo") -> float:
    """One-sided p-value of "the success rate now is lower than in the baseline"."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; known: {', '.join(TESTS)}")
    if k_now * n_base >= k_base * n_now:
        return 1.0  # the rate did not go down: no evidence of a drop (and saves a test)
    from scipy.stats import boschloo_exact, fisher_exact

    # Columns are the two runs, rows successes and failures; "less": now < baseline.
    table = [[k_now, k_base], [n_now - k_now, n_base - k_base]]
    if test == "fisher":
        return float(fisher_exact(table, alternative="less").pvalue)
    return float(boschloo_exact(table, alternative="less").pvalue)


def rise_pvalue(k_now: int, n_now: int, k_base: int, n_base: int, test: str = "boschloo") -> float:
    """One-sided p-value of "the success rate now is higher than in the baseline"."""
    return drop_pvalue(n_now - k_now, n_now, n_base - k_base, n_base, test)


def another_recipe(then: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether two runs' searches chose different recipes for a case. A recipe on one side alone is
    a grid of one against its values written in ``[train]``: with equal settings, the same training."""
    return bool(then) and bool(now) and then != now


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One case against its baseline entry."""

    cell: str
    length: int
    status: str
    k: int
    n: int
    k_base: int | None = None
    n_base: int | None = None
    p_drop: float | None = None
    p_adjusted: float | None = None
    p_rise: float | None = None
    #: Where the search chose another recipe than the baseline's: (then, now), as labels.
    recipes: tuple[str, str] | None = None

    def describe(self, baseline: Baseline) -> str:
        text = self._describe(baseline)
        if self.recipes is not None:
            text += f" (recipe {self.recipes[0]} then, {self.recipes[1]} now)"
        return text

    def _describe(self, baseline: Baseline) -> str:
        case = f"{self.cell}-L{self.length}"
        if self.status == NOT_IN_BASELINE:
            return f"{case}: {self.k}/{self.n} now, not in baseline {baseline.path}"
        if self.status == CHANGED_CONFIG:
            return (
                f"{case}: {self.k}/{self.n} now vs {self.k_base}/{self.n_base} in the baseline, "
                "but its configuration changed since, so the counts are not comparable"
            )
        text = (
            f"{case}: {self.k}/{self.n} now vs {self.k_base}/{self.n_base} in the baseline of "
            f"{baseline.created}"
        )
        if self.status == REGRESSED and self.p_adjusted != self.p_drop:
            return f"{text}; p(drop) = {self.p_drop:.3g}, Holm-adjusted {self.p_adjusted:.3g}"
        if self.status == REGRESSED:  # one case compared, or --rnn-no-holm
            return f"{text}; p(drop) = {self.p_drop:.3g}"
        if self.status == IMPROVED:
            return f"{text}; p(rise) = {self.p_rise:.3g}"
        return text


def compare(
    records: list[CaseRecord],
    baseline: Baseline,
    alpha: float,
    *,
    test: str = "boschloo",
    use_holm: bool = True,
) -> list[Comparison]:
    """Judge every record of one suite against the baseline (Holm across the comparable ones)."""
    results: list[Comparison] = []
    comparable: list[tuple[CaseRecord, BaselineEntry]] = []
    for r in records:
        entry = baseline.entries.get((r.suite, r.cell, r.length))
        if entry is None:
            results.append(Comparison(r.cell, r.length, NOT_IN_BASELINE, r.k, r.n))
            continue
        if entry.config_hash != r.config_hash:
            results.append(Comparison(r.cell, r.length, CHANGED_CONFIG, r.k, r.n, entry.k, entry.n))
            continue
        comparable.append((r, entry))
    drops = [drop_pvalue(r.k, r.n, e.k, e.n, test) for r, e in comparable]
    adjusted = holm(drops) if use_holm else drops
    for (r, e), p_drop, p_adj in zip(comparable, drops, adjusted, strict=True):
        p_rise = rise_pvalue(r.k, r.n, e.k, e.n, test)
        if p_adj <= alpha:
            status = REGRESSED
        elif p_rise <= alpha:
            status = IMPROVED
        else:
            status = UNCHANGED
        recipes = None
        if another_recipe(dict(e.recipe), r.recipe):
            recipes = (_label(dict(e.recipe)), _label(r.recipe))
        results.append(
            Comparison(r.cell, r.length, status, r.k, r.n, e.k, e.n, p_drop, p_adj, p_rise, recipes)
        )
    return results


def _label(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in recipe.items()) or "the suite's"
