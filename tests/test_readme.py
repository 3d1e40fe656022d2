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


def test_the_parity_reproductions_evaluation_figures_are_the_committed_reports():
    """The README bounds every LSTM and RNN trial of reports/parity_che.json at the lengths it
    evaluates: it said no RNN trial scored above 0.528, where one scores 0.537 at length 500."""
    import json

    text = " ".join(README.split())
    found = re.search(
        r"at ([\d, and]+) every LSTM trial scores at least ([\d.]+) and no RNN trial above ([\d.]+)", text
    )
    assert found, "the parity reproduction's sentence on its evaluation lengths"
    lengths = [int(n) for n in re.findall(r"\d+", found[1])]
    report = Path(__file__).parent.parent / "reports" / "parity_che.json"
    cases = {c["cell"]: c for c in json.loads(report.read_text(encoding="utf-8"))["cases"]}
    scores = {}
    for cell, case in cases.items():
        assert [g["length"] for g in case["generalisation"]] == lengths
        scores[cell] = [m for t in case["trials"] for m in t["eval_metrics"]]
    assert f"{min(scores['lstm']):.3f}" == found[2]
    assert f"{max(scores['rnn']):.3f}" == found[3]


def _anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_the_contents_list_every_section_and_link_to_it():
    """A section added, renamed or removed without the contents is a link to nowhere, or a section
    the contents hide."""
    prose = re.sub(r"```.*?```", "", README, flags=re.DOTALL)
    headings = re.findall(r"^#{2,3} (.+)$", prose, flags=re.MULTILINE)
    contents = README.split("**Contents**", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"^\s*- \[(.+?)\]\(#(.+?)\)$", contents, flags=re.MULTILINE)
    assert [title for title, _ in links] == headings
    assert all(target == _anchor(title) for title, target in links)
