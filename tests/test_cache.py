"""The result store: a stored case is read back only when it is whole and what a run writes."""

import importlib
import json
import multiprocessing
import sys
from pathlib import Path

import pytest

from pytest_rnnmemory.atomic import write_atomic
from pytest_rnnmemory.cache import CacheWarning, ResultCache, _module_source, _user_files
from tests.records import record_of


def test_a_stored_case_is_read_back_marked_as_stored(tmp_path):
    cache = ResultCache(tmp_path)
    record = record_of("rnn", 5, 4, n=6)
    cache.put("k" * 64, record)
    again = cache.get("k" * 64)
    assert again.cached and again.to_json() | {"cached": False} == record.to_json()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda entry: entry["record"].pop("k"), "record.k: missing"),
        (
            lambda entry: entry["record"]["trials"][0].update(success=False, metric=0.5),
            "3 successful trials, but k = 4",
        ),
        (
            lambda entry: entry["record"]["trials"][0].update(success=False),
            r"trials\[0\].success: false, but its metric 1 reaches the threshold 0.95",
        ),
        (lambda entry: entry.update(record=[]), "record: expected an object"),
        (lambda entry: entry.update(key="other"), "it was stored for another case"),
    ],
)
def test_a_malformed_stored_case_is_trained_again_with_a_warning(tmp_path, change, reason):
    cache = ResultCache(tmp_path)
    cache.put("k" * 64, record_of("rnn", 5, 4, n=6))
    (path,) = tmp_path.glob("*.json")
    entry = json.loads(path.read_text())
    change(entry)
    path.write_text(json.dumps(entry))
    with pytest.warns(CacheWarning, match=reason):
        assert cache.get("k" * 64) is None


def _write_many(args):
    path, text, count = args
    for _ in range(count):
        write_atomic(path, text)
    return True


def test_processes_writing_one_file_at_once_each_replace_it_whole(tmp_path):
    """With one fixed temporary name, concurrent writers renamed each other's half files away."""
    path = tmp_path / "report.json"
    texts = [json.dumps({"writer": i, "pad": "x" * 20000}) for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert all(pool.map(_write_many, [(path, text, 150) for text in texts]))
    assert path.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_atomic_write_gives_the_file_a_plain_writes_permissions(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    write_atomic(atomic, "x")
    assert atomic.stat().st_mode == plain.stat().st_mode


def test_editing_a_module_a_users_cell_draws_on_changes_its_key(tmp_path, monkeypatch):
    # The cell's class is in one file, its base class in a second, a helper of the base in a third.
    package = tmp_path / "editedcells"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 1.0\n")
    (package / "base.py").write_text(
        "import torch\nfrom torch import nn\nfrom . import helpers\n\n"
        "class Base(nn.Module):\n    def forward(self, x):\n        return x * helpers.SCALE\n"
    )
    (package / "cells.py").write_text("from .base import Base\n\nclass Mine(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = _module_source("editedcells.cells:Mine")
    assert _module_source("editedcells.cells:Mine") == before
    (package / "base.py").write_text((package / "base.py").read_text().replace("x *", "x * 2 *"))
    edited_base = _module_source("editedcells.cells:Mine")
    (package / "helpers.py").write_text("SCALE = 3.0\n")
    edited_helper = _module_source("editedcells.cells:Mine")
    assert len({before, edited_base, edited_helper}) == 3


@pytest.mark.parametrize("loaded", [False, True], ids=["not yet imported", "imported by a forward"])
def test_a_module_a_cell_imports_inside_a_function_is_part_of_the_key(tmp_path, monkeypatch, loaded):
    # The helper is imported where the forward runs, not at the top: the cell module's names
    # never reach it, its source does. Its own helper, imported at its top, is followed too.
    package = tmp_path / f"lazycells_{loaded}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("from .constants import SCALE\n\ndef act(x):\n    return x * SCALE\n")
    (package / "constants.py").write_text("SCALE = 1.0\n")
    (package / "cells.py").write_text(
        "class Mine:\n    def forward(self, x):\n        from .helper import act\n\n        return act(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"lazycells_{loaded}.cells:Mine"
    if loaded:
        importlib.import_module(f"lazycells_{loaded}.cells").Mine().forward(1.0)
    before = _module_source(name)
    (package / "helper.py").write_text(
        (package / "helper.py").read_text().replace("x * SCALE", "x * 2 * SCALE")
    )
    edited_helper = _module_source(name)
    (package / "constants.py").write_text("SCALE = 3.0\n")
    assert len({before, edited_helper, _module_source(name)}) == 3
    assert (f"lazycells_{loaded}.helper" in sys.modules) == loaded  # read, never imported


def test_a_package_a_forward_imports_before_any_of_it_is_loaded_is_part_of_the_key(tmp_path, monkeypatch):
    """``from deep.inner.helpers import scale`` inside a forward, nothing of ``deep`` imported yet:
    found package by package, none of it run; its __init__ files count too."""
    inner = tmp_path / "deeplazy" / "inner"
    inner.mkdir(parents=True)
    (tmp_path / "deeplazy" / "__init__.py").write_text("")
    (inner / "__init__.py").write_text("")
    (inner / "helpers.py").write_text("SCALE = 1.0\n")
    (tmp_path / "deeplazy_cells.py").write_text(
        "class Mine:\n    def forward(self, x):\n        from deeplazy.inner.helpers import SCALE\n\n"
        "        return x * SCALE\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = _module_source("deeplazy_cells:Mine")
    assert "deeplazy" not in sys.modules  # read, never imported
    files = _user_files(importlib.import_module("deeplazy_cells"))
    assert {p.relative_to(tmp_path).as_posix() for p in files} == {
        "deeplazy_cells.py",
        "deeplazy/__init__.py",
        "deeplazy/inner/__init__.py",
        "deeplazy/inner/helpers.py",
    }
    (inner / "helpers.py").write_text("SCALE = 2.0\n")
    assert _module_source("deeplazy_cells:Mine") != before


def test_an_import_a_test_blocks_is_passed_over(tmp_path, monkeypatch):
    # sys.modules[name] = None is how tests block an optional dependency
    (tmp_path / "optional_cells.py").write_text(
        "try:\n    import optional_accel\nexcept ImportError:\n    optional_accel = None\n\n"
        "class Cell:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "optional_accel", None)
    assert _module_source("optional_cells:Cell") is not None


def test_installed_code_a_cell_imports_is_left_to_the_versions():
    # torch and the standard library are pinned by their versions, not read file by file.
    import tests.cells_for_tests as cells

    files = _user_files(cells)
    assert files == [Path(cells.__file__).resolve()]


def test_a_cell_module_holding_torchs_ops_module_is_keyed_without_reading_it(tmp_path, monkeypatch):
    # torch.ops says its file is "_ops.py", a name without a folder, which is no file to read.
    (tmp_path / "cells_with_ops.py").write_text("from torch import ops\n\nclass Cell:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _module_source("cells_with_ops:Cell") is not None


def test_a_base_class_in_a_namespace_package_is_part_of_the_key(tmp_path, monkeypatch):
    (tmp_path / "nsbases").mkdir()  # no __init__.py: a namespace package, which has no file
    (tmp_path / "nsbases" / "base.py").write_text("SCALE = 1.0\n\nclass Base:\n    pass\n")
    (tmp_path / "nscells.py").write_text("import nsbases.base\n\nclass Cell(nsbases.base.Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = _module_source("nscells:Cell")
    (tmp_path / "nsbases" / "base.py").write_text("SCALE = 2.0\n\nclass Base:\n    pass\n")
    assert _module_source("nscells:Cell") != before
