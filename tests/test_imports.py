"""Naming a user's cell or task by import path: each way it can go wrong says what to do."""

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
    assert "add the folder that holds 'no_such_cells_module' to pytest's 'pythonpath' setting" in message
    assert "importlib" not in message  # the import machinery's frames are not the user's


def test_a_misspelt_module_on_the_path_gets_the_closest_name_beside_the_path_advice(tmp_path, monkeypatch):
    (tmp_path / "spelled_cells_here.py").write_text("class Cell:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _import("spelled_cels_here:Cell")
    assert message.endswith("(or to PYTHONPATH) (did you mean 'spelled_cells_here'?)")


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
