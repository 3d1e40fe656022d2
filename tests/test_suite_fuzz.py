"""Generated suite files with keys set to what no key accepts: one line per problem, never a traceback.

The keys come from the schema, so a key added later is fuzzed too. Hypothesis runs
derandomized (the same examples on every run), in-process on the suite loader, no training.
"""

import dataclasses
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_rnnmemory.errors import SuiteError
from pytest_rnnmemory.schema import (
    SECTIONS,
    Overrides,
    ReferenceFigure,
    ReferenceSection,
    check_value,
    is_required,
    keys_of,
)
from pytest_rnnmemory.suite import load_suite
from pytest_rnnmemory.tasks import TASKS

BASE = {
    "suite": {"task": "recall", "cells": ["rnn", "lstm"], "lengths": [2, 5]},
    "train": {"samples": 64, "val_samples": 32},
}

#: Every key of the schema, and every task's parameter.
KEYS = [f"{section}.{name}" for section, cls in SECTIONS.items() for name in keys_of(cls)]
KEYS += sorted({f"task.{param}" for cls in TASKS.values() for param in cls.params})

MISSING = object()
#: Values that no key of a suite accepts: each must be named in exactly one line.
ALWAYS_WRONG = [math.nan, math.inf, -math.inf, {"x": 1}]
#: Values some keys accept and others refuse: whatever they do, no traceback.
SOMETIMES_WRONG = [-1, 0, 1, 10**18, 1e300, -1e-300, "x", "", [], [0], [10**9], [1.5], True, MISSING]


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def render(tables):
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)


mutations = st.dictionaries(
    st.sampled_from(KEYS), st.sampled_from(ALWAYS_WRONG + SOMETIMES_WRONG), min_size=1, max_size=4
)


@settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=mutations, in_profile=st.booleans())
def test_every_generated_problem_is_one_line_naming_its_key(tmp_path_factory, mutations, in_profile):
    tables = json.loads(json.dumps(BASE))
    target = tables.setdefault("profiles", {}).setdefault("fuzz", {}) if in_profile else tables
    for path, value in mutations.items():
        section, key = path.split(".")
        if value is MISSING:
            tables.get(section, {}).pop(key, None)
            continue
        target.setdefault(section, {})[key] = value
    if not tables.get("profiles", {}).get("fuzz"):
        tables.pop("profiles", None)
    suite_file = tmp_path_factory.mktemp("fuzz") / "fuzzed.toml"
    suite_file.write_text(render(tables), encoding="utf-8")
    overrides = Overrides(profile="fuzz") if "profiles" in tables else Overrides()
    try:
        load_suite(suite_file, overrides, label="fuzzed.toml")
    except SuiteError as exc:
        lines = exc.problems
        assert lines, "a SuiteError names at least one problem"
        for line in lines:
            assert line.startswith("fuzzed.toml: ") and "\n" not in line, line
        for path, value in mutations.items():
            if refused(path, value):
                named = [line for line in lines if f"{path} = " in line or f"{path}:" in line]
                assert len(named) == 1, (path, value, lines)
        return
    # Loaded: no key holds a value its rule refuses.
    assert not any(refused(path, value) for path, value in mutations.items())


def refused(path, value):
    """Whether a value is one the key must refuse: by the key's own rule (a table is one value that
    every key but a table's refuses), or a task parameter that is not a finite number."""
    if not any(value is wrong or value == wrong for wrong in ALWAYS_WRONG):
        return False
    section, key = path.split(".")
    if section == "task":
        return True
    return check_value(keys_of(SECTIONS[section])[key], value) is not None


def test_the_fuzzed_keys_are_the_schemas():
    assert "train.lr" in KEYS and "verdict.alpha" in KEYS and "task.noise" in KEYS
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name}" in KEYS
            assert is_required(f) == (f"{section}.{f.name}" in ("suite.task", "suite.cells", "suite.lengths"))


FIGURE = {"cell": "rnn", "length": 2, "statistic": "success_rate", "value": 0.5, "trials": 10}
REFERENCE_KEYS = [f"reference.{name}" for name in keys_of(ReferenceSection) if name != "figures"]
REFERENCE_KEYS += [f"reference.figures.{name}" for name in keys_of(ReferenceFigure)]

reference_mutations = st.dictionaries(
    st.sampled_from(REFERENCE_KEYS), st.sampled_from(ALWAYS_WRONG + SOMETIMES_WRONG), min_size=1, max_size=3
)


@settings(derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=reference_mutations)
def test_every_problem_of_a_reference_is_one_line_naming_its_key(tmp_path_factory, mutations):
    head, figure = {"source": "Somebody (2000)"}, dict(FIGURE)
    for path, value in mutations.items():
        table = figure if path.startswith("reference.figures.") else head
        key = path.rsplit(".", 1)[1]
        if value is MISSING:
            table.pop(key, None)
        else:
            table[key] = value
    text = render(BASE) + render({"reference": head}) + "[[reference.figures]]\n"
    text += "\n".join(f"{key} = {toml_value(value)}" for key, value in figure.items()) + "\n"
    suite_file = tmp_path_factory.mktemp("fuzz") / "fuzzed.toml"
    suite_file.write_text(text, encoding="utf-8")
    try:
        load_suite(suite_file, Overrides(), label="fuzzed.toml")
    except SuiteError as exc:
        lines = exc.problems
        for line in lines:
            assert line.startswith("fuzzed.toml: ") and "\n" not in line, line
        for path, value in mutations.items():
            if any(value is wrong or value == wrong for wrong in ALWAYS_WRONG):
                where = path.replace("reference.figures.", "reference.figures[0].")
                named = [line for line in lines if f"{where} = " in line]
                assert len(named) == 1, (path, value, lines)
        return
    assert not any(any(v is w or v == w for w in ALWAYS_WRONG) for v in mutations.values())
