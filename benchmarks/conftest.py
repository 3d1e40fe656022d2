"""Print the engine's speed-up over the per-trial loop after the benchmark table."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    scheme_summary(terminalreporter)
    search_cost_summary(terminalreporter)
    user_cell_summary(terminalreporter)
    startup_summary(terminalreporter)
    engine_summary(terminalreporter)


def engine_summary(terminalreporter):
    from tabulate import tabulate

    from benchmarks.test_engine_speed import DEFAULT_THREADS, NATIVE, RESULTS, TRIALS

    if not RESULTS:
        return
    terminalreporter.section("engine against the per-trial loop (same run, same machine)")
    rows = [
        [
            case,
            r["scheme"],
            f"{r['loop_s']:.1f}",
            f"{r['engine_s']:.2f}",
            f"{r['ratio']:.1f}x",
            f"{r['seq_steps_per_s'] / 1e6:.1f}M",
            f"{r['loop_seq_steps_per_s'] / 1e6:.2f}M",
            f"{r['peak_mib']:.0f}",
            "" if r["without"] is None else f"{r['without_ratio']:.1f}x ({r['without']})",
            f"{r['loop_default_s']:.1f}",
            f"{r['default_ratio']:.1f}x",
        ]
        for case, r in RESULTS.items()
    ]
    headers = [
        "case",
        "scheme",
        f"loop s ({TRIALS} trials, scaled)",
        "engine s",
        "speed-up",
        "engine seq-steps/s",
        "loop seq-steps/s",
        "engine peak RSS MiB",
        "speed-up without native",
        f"loop s, {DEFAULT_THREADS} threads (torch's default)",
        "speed-up over it",
    ]
    terminalreporter.write_line(tabulate(rows, headers=headers))
    if NATIVE.get("reason"):
        terminalreporter.write_line(f"native kernel unavailable: {NATIVE['reason']}")
    else:
        terminalreporter.write_line(
            f"native kernel built or loaded in {NATIVE['build_s']:.1f} s before timing (once per machine)"
        )


def scheme_summary(terminalreporter):
    from tabulate import tabulate

    from benchmarks.test_scheme_speed import RESULTS, SCHEMES

    if not RESULTS:
        return
    terminalreporter.section("the built-in cells' schemes on the same case (same run, same machine)")
    rows = [
        [case, *(f"{r[s]:.2f}" for s in SCHEMES), *(f"{r[s] / r['native']:.1f}x" for s in SCHEMES[1:])]
        for case, r in RESULTS.items()
    ]
    headers = ["case", *(f"{s} s" for s in SCHEMES), *(f"{s} / native" for s in SCHEMES[1:])]
    terminalreporter.write_line(tabulate(rows, headers=headers))


def search_cost_summary(terminalreporter):
    from tabulate import tabulate

    from benchmarks.test_search_cost import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("a 16-recipe search against the plain case (same run, same machine)")
    rows = [
        [
            case,
            f"{r['plain_s']:.2f}",
            f"{r['searched_s']:.2f}",
            f"{r['ratio']:.2f}x",
            r["tuning_trials"],
            f"{r['trial_ratio']:.2f}x",
            r["chosen"],
        ]
        for case, r in RESULTS.items()
    ]
    headers = ["case", "plain s", "searched s", "cost", "tuning trials", "in trials", "recipe chosen"]
    terminalreporter.write_line(tabulate(rows, headers=headers))


def user_cell_summary(terminalreporter):
    from tabulate import tabulate

    from benchmarks.test_user_cell_speed import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("users' cells: the engine against the per-trial loop (same run, same machine)")
    rows = [
        [
            case,
            f"{r['loop_s']:.1f}",
            f"{r['eager_s']:.2f}",
            f"{r['eager_ratio']:.1f}x",
            f"{r['first_s']:.1f}",
            f"{r['cached_s']:.1f}",
            f"{r['engine_s']:.2f}" if r["compiled"] else "(did not compile)",
            f"{r['ratio']:.1f}x" if r["compiled"] else "",
        ]
        for case, r in RESULTS.items()
    ]
    headers = [
        "cell",
        "loop s (30 trials)",
        "vmap s",
        "vmap speed-up",
        "compiled, first case, empty cache s",
        "compiled, first case, cache on disk s",
        "compiled, later cases s",
        "compiled speed-up",
    ]
    terminalreporter.write_line(tabulate(rows, headers=headers))


def startup_summary(terminalreporter):
    from benchmarks.test_startup import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("a one-case suite's process against importing torch (medians of 5)")
    terminalreporter.write_line(
        f"pytest on one case: {RESULTS['suite_s']:.2f} s; python -c 'import torch': "
        f"{RESULTS['torch_s']:.2f} s; difference {RESULTS['difference_s']:.2f} s"
    )
