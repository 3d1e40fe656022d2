"""The time a one-case suite takes from the command line to its report, against importing torch.

    pytest benchmarks/test_startup.py --benchmark-only

A fresh process runs ``pytest`` on a suite of one small latching case (lstm,
hidden 1, 10 trials, 200 sequences, 2 epochs) with its figures off and no other
plugin loaded (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``); another
fresh process runs ``python -c "import torch"``. Each is timed five times and
the medians compared: the target is a difference within one second, which is
what the plugin, pytest, the statistics, the native kernel's load and the case
itself take beyond torch. A built-in cell on the native scheme must not import
torch._dynamo (it takes over a second); the run checks that too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

RESULTS: dict[str, float] = {}

SUITE = textwrap.dedent(
    """
    [suite]
    task = "latching"
    cells = ["lstm"]
    lengths = [10]

    [train]
    samples = 200
    val_samples = 100
    epochs = 2

    [verdict]
    trials = 10
    """
)

CONFTEST = textwrap.dedent(
    """
    import sys

    def pytest_sessionfinish(session):
        with open("dynamo.txt", "w") as out:
            out.write(str("torch._dynamo" in sys.modules))
    """
)


def timed(command: list[str], cwd: Path) -> float:
    # Only this plugin: others installed beside it (hypothesis, xdist, benchmark) load in every run.
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=False, capture_output=True, env=env)
    return time.perf_counter() - started


def test_a_one_case_suite_runs_within_a_second_of_importing_torch(benchmark, tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "one.toml").write_text(SUITE)
    suite = [sys.executable, "-m", "pytest", "-p", "pytest_rnnmemory.plugin", "one.toml", "-q"]
    suite += ["-p", "no:cacheprovider", "--rnn-figures=off"]
    torch_only = [sys.executable, "-c", "import torch"]
    timed(suite, tmp_path)  # builds the native kernel if this machine has not yet
    suites = [timed(suite, tmp_path) for _ in range(5)]
    imports = [timed(torch_only, tmp_path) for _ in range(5)]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    RESULTS.update(
        suite_s=statistics.median(suites),
        torch_s=statistics.median(imports),
        difference_s=statistics.median(suites) - statistics.median(imports),
    )
    benchmark.extra_info.update(RESULTS)
    assert (tmp_path / "dynamo.txt").read_text() == "False"
