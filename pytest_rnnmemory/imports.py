"""Resolving the ``package.module:Class`` paths that name a user's own task or cell."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from .errors import did_you_mean
from .usercode import where


def import_object(path: str, *, what: str, error: type[Exception]) -> object:
    """Import ``package.module:Name``; raise ``error`` with a message a user can act on."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise error(f"{what} {path!r}: an import path must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            # the user's module itself, not a module it imports
            hint = _not_found_hint(exc.name)
        raise error(
            f"{what} {path!r}: cannot import module {module_name!r}: {exc}{where(exc)}{hint}"
        ) from None
    except Exception as exc:  # importing runs the user's module, which may raise anything
        raise error(f"{what} {path!r}: importing module {module_name!r} raised {exc!r}{where(exc)}") from None
    obj = module
    for depth, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([module_name, *attr.split(".")[:depth]])
            hint = did_you_mean(part, (n for n in dir(obj) if not n.startswith("_")))
            if depth == 0:
                hint += _namespace_hint(module)
            raise error(f"{what} {path!r}: {owner!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _not_found_hint(name: str) -> str:
    """What to do about module ``name`` not found: a close name in its package, or where modules
    are looked for."""
    parent = name.rpartition(".")[0]
    package = sys.modules.get(parent) if parent else None
    if package is not None and hasattr(package, "__path__"):
        return did_you_mean(name, (f"{parent}.{m.name}" for m in pkgutil.iter_modules(package.__path__)))
    # a misspelt module of the user's, in a folder on the path or the current one: the name it is
    # close to, first
    close = "" if parent else did_you_mean(name, (m for m in _users_modules() if m != name))
    # plain `pytest` does not put the current folder on sys.path; `python -m pytest` does
    here = Path.cwd().resolve()
    on_path = any(Path(entry or ".").resolve() == here for entry in sys.path)
    where = "sys.path:"
    if not on_path:
        beside = any(m.name == name for m in pkgutil.iter_modules([str(here)]))
        where = (
            "sys.path, where plain `pytest` does not put the current folder"
            + (f" (which holds {name!r})" if beside else "")
            + ": run `python -m pytest`, which does, or"
        )
    return (
        f"{close}; modules are looked for on {where} add the folder that holds {name!r} to pytest's "
        "'pythonpath' setting (`pythonpath = .` in the pytest ini file of that folder) or to PYTHONPATH "
        "('python -m pytest_rnnmemory' reads only PYTHONPATH)"
    )


def _namespace_hint(module: object) -> str:
    """Why a module has none of the user's names: it is a folder named like it (a namespace
    package, which Python imports from any folder of that name on the path), not the module file."""
    if getattr(module, "__file__", None) is not None or not hasattr(module, "__path__"):
        return ""
    name = getattr(module, "__name__", "")
    folders = [Path(folder) for folder in module.__path__]
    shown = ", ".join(str(folder) for folder in folders)
    files = [folder / f"{name.rpartition('.')[2]}.py" for folder in folders]
    inside = [str(file) for file in files if file.is_file()]
    found = (
        f"; to import {inside[0]}, run `python -m pytest` in {Path(inside[0]).parent} or add that "
        "folder to pytest's 'pythonpath' setting"
        if inside
        else ""
    )
    return f"; {name!r} was imported as the folder {shown} (a namespace package), not a module file{found}"


def _users_modules() -> list[str]:
    """The top-level modules of the user's folders on ``sys.path`` (installed code left out: a
    name close to one of its hundreds of modules is no hint)."""
    from .usercode import installed_roots

    roots = installed_roots()
    folders = [
        folder
        # "": the current folder, which is looked in even off the path (plain `pytest` leaves it off);
        # by its full path, which pkgutil's cache of finders cannot mistake for an earlier one's
        for folder in dict.fromkeys([*(entry or "." for entry in sys.path), str(Path.cwd())])
        if Path(folder).is_dir() and not any(Path(folder).resolve().is_relative_to(r) for r in roots)
    ]
    return [m.name for m in pkgutil.iter_modules(folders)]
