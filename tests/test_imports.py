"""Naming a user's cell or task by import path: each way it can go wrong says what to do."""

import sys
from pathlib import Path

import pytest

from pytest_rnnmemory.errors import CellError
from pytest_rnnmemory.imports import import_object


def _import(path: str) -> str:
    with pytest.raises(CellError) as info:
        import_object(path, what="cell", error=CellError)
    return str(info.value)


def test_a_misspelt_class_is_answered_with_the_closest_name():
    message = _import("tests.cells_for_tests:StepGUR")
    assert message == (
        "cell 'tests.cells_for_tests:StepGUR': 'tests.cells_for_tests' has no attribute 'StepGUR' "
        "(did you mean 'StepGRU'?)"
    )


def test_a_module_not_on_the_path_says_where_modules_are_looked_for():
    message = _import("no_such_cells_module.sub:Cell")
    assert "No module named 'no_such_cells_module'" in message
    assert (
        "add the folder that holds 'no_such_cells_module' to pytest's 'pythonpath' setting "
        "(`pythonpath = .` in the pytest ini file of that folder) or to PYTHONPATH"
    ) in message
    assert "importlib" not in message  # the import machinery's frames are not the user's


def test_a_misspelt_module_on_the_path_gets_the_closest_name_beside_the_path_advice(tmp_path, monkeypatch):
    (tmp_path / "spelled_cells_here.py").write_text("class Cell:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _import("spelled_cels_here:Cell")
    # the likelier fix first
    assert "No module named 'spelled_cels_here' (did you mean 'spelled_cells_here'?); modules are" in message


def _off_the_path(monkeypatch, folder: Path) -> None:
    """Run in ``folder`` as plain ``pytest`` does: the current folder is not on sys.path."""
    monkeypatch.chdir(folder)
    here = folder.resolve()
    monkeypatch.setattr(sys, "path", [e for e in sys.path if e and Path(e).resolve() != here])


def test_a_module_beside_a_plain_pytest_run_says_python_m_pytest_puts_the_folder_on_the_path(
    tmp_path, monkeypatch
):
    (tmp_path / "cells_beside_the_run.py").write_text("class Cell:\n    pass\n")
    _off_the_path(monkeypatch, tmp_path)
    message = _import("cells_beside_the_run:Cell")
    assert message.endswith(
        "No module named 'cells_beside_the_run'; modules are looked for on sys.path, where plain "
        "`pytest` does not put the current folder (which holds 'cells_beside_the_run'): run "
        "`python -m pytest`, which does, or add the folder that holds 'cells_beside_the_run' to "
        "pytest's 'pythonpath' setting (`pythonpath = .` in the pytest ini file of that folder) or "
        "to PYTHONPATH ('python -m pytest_rnnmemory' reads only PYTHONPATH)"
    )


def test_a_misspelt_module_beside_a_plain_pytest_run_gets_the_closest_name_first(tmp_path, monkeypatch):
    (tmp_path / "cells_beside_a_run.py").write_text("class Cell:\n    pass\n")
    _off_the_path(monkeypatch, tmp_path)
    message = _import("cells_besid_a_run:Cell")
    assert (
        "No module named 'cells_besid_a_run' (did you mean 'cells_beside_a_run'?); modules are looked "
        "for on sys.path, where plain `pytest` does not put the current folder: run `python -m pytest`"
    ) in message


def test_a_folder_imported_for_the_module_of_its_name_says_it_is_a_namespace_package(tmp_path, monkeypatch):
    # run from the parent of the user's folder: 'nscells' is the folder, not nscells/nscells.py
    (tmp_path / "nscells").mkdir()
    (tmp_path / "nscells" / "nscells.py").write_text("class MyRNN:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nscells", raising=False)
    message = _import("nscells:MyRNN")
    folder = tmp_path / "nscells"
    assert message == (
        f"cell 'nscells:MyRNN': 'nscells' has no attribute 'MyRNN'; 'nscells' was imported as the folder "
        f"{folder} (a namespace package), not a module file; to import {folder / 'nscells.py'}, run "
        f"`python -m pytest` in {folder} or add that folder to pytest's 'pythonpath' setting"
    )


def test_a_module_not_on_the_path_says_replay_reads_only_pythonpath(tmp_path, monkeypatch, capsys):
    """A run found the user's cells through pytest's 'pythonpath' setting; 'replay' of its report,
    which runs outside pytest, was told to add the folder to that setting, which it had."""
    import json

    from pytest_rnnmemory.__main__ import main

    from .test_report import report_data

    data = report_data(lengths=(5,))
    data["config"]["suite"]["cells"] = ["cells_under_src_only:Cell"]
    data["cases"] = [dict(data["cases"][0], cell="cells_under_src_only:Cell", scheme="vmap")]
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        main(["replay", str(path), "--cell", "cells_under_src_only:Cell", "--length", "5", "--trial", "0"])
    err = capsys.readouterr().err
    assert "cannot import module 'cells_under_src_only'" in err
    assert "'python -m pytest_rnnmemory' reads only PYTHONPATH" in err


@pytest.mark.parametrize("module", ["models", "rnns", "layers"])
def test_a_module_not_on_the_path_is_not_matched_to_an_installed_one(module):
    # the standard library and site-packages hold 'codecs', 'warnings' and hundreds more
    assert "did you mean" not in _import(f"{module}:Cell")


def test_a_module_that_imports_what_is_missing_points_to_its_line(tmp_path, monkeypatch):
    (tmp_path / "cells_missing_a_dependency.py").write_text("import torch\nimport not_installed_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _import("cells_missing_a_dependency:Cell")
    assert "No module named 'not_installed_here'" in message
    assert f"(at {tmp_path / 'cells_missing_a_dependency.py'}:2, in <module>)" in message
    assert "pythonpath" not in message  # the module was found: its import is what is missing


def test_a_module_that_raises_as_it_is_imported_is_one_error_naming_its_line(tmp_path, monkeypatch):
    (tmp_path / "cells_that_raise.py").write_text("SCALE = 1\nSHIFT = SCALE / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _import("cells_that_raise:Cell")
    assert message == (
        "cell 'cells_that_raise:Cell': importing module 'cells_that_raise' raised "
        f"ZeroDivisionError('division by zero') (at {tmp_path / 'cells_that_raise.py'}:2, in <module>)"
    )


def test_a_misspelt_module_of_a_package_that_was_found_gets_the_closest_name():
    message = _import("tests.cels_for_tests:StepGRU")
    assert message.endswith("No module named 'tests.cels_for_tests' (did you mean 'tests.cells_for_tests'?)")
