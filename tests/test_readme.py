"""The README is the suite files' reference: it must document every key the schema has, and its
examples must be what the plugin prints."""

import re
from pathlib import Path

import pytest

from pytest_rnnmemory.gate import drop_pvalue, holm
from pytest_rnnmemory.schema import REFERENCE, SECTIONS, keys_of
from pytest_rnnmemory.schemes import SCHEMES

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
KEYS = [
    (section, name, f)
    for section, cls in {**SECTIONS, **REFERENCE}.items()
    for name, f in keys_of(cls).items()
]


@pytest.mark.parametrize(("section", "name", "field"), KEYS, ids=[f"{s}.{n}" for s, n, _ in KEYS])
def test_every_suite_key_is_documented_with_its_meaning(section, name, field):
    row = next((line for line in README.splitlines() if line.startswith(f"| `{section}.{name}` |")), None)
    assert row is not None, f"README documents no `{section}.{name}`"
    assert field.metadata["doc"] in row


def test_the_readme_opens_with_the_two_commands():
    opening = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "pytest --rnn-suite=latching --cell=lstm" in opening
    assert "python -m pytest" in opening


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_scheme_of_the_registry_is_listed_with_what_it_serves(name):
    engine = README.split("## The engine", 1)[1].split("###", 1)[0]
    summary = " ".join(SCHEMES[name].summary.split())
    listed = " ".join(engine.split())
    assert f"- `{name}`: {summary}" in listed


def test_the_gates_example_gives_the_p_values_of_its_counts():
    """The README's REGRESSED line: the case with the smallest p-value of four compared."""
    line = next(line for line in README.splitlines() if line.startswith("REGRESSED: "))
    pattern = r"(\d+)/(\d+) now vs (\d+)/(\d+) in the baseline .*; p\(drop\) = (\S+), Holm-adjusted (\S+)$"
    k_now, n_now, k_base, n_base, shown, adjusted = re.search(pattern, line).groups()
    p = drop_pvalue(int(k_now), int(n_now), int(k_base), int(n_base))
    assert shown == f"{p:.3g}"
    assert adjusted == f"{holm([p, 1.0, 1.0, 1.0])[0]:.3g}"


def test_every_command_of_the_readme_that_selects_one_case_with_k_gives_its_id():
    """-k matches substrings: "rnn and L2" selects rnn-L20 too, where "rnn-L20", the case's id, is
    one case (tests/test_plugin.py selects with both)."""
    commands = [line for line in README.splitlines() if line.startswith("pytest ")]
    commands += re.findall(r"`(pytest [^`]+)`", README)
    selecting = [e for command in commands for e in re.findall(r'-k "([^"]+)"', command)]
    assert selecting
    for expression in selecting:
        if re.search(r"\bL\d+", expression):
            assert re.fullmatch(r"[\w:.]+-L\d+", expression), f'-k "{expression}" is not a case\'s id'
