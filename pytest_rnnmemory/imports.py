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
    # a misspelt module of the user's, in a folder that is on the path: the name it is close to
    close = "" if parent else did_you_mean(name, _users_modules())
    return (
        f"; modules are looked for on sys.path: add the folder that holds {name!r} to pytest's "
        f"'pythonpath' setting (or to PYTHONPATH){close}"
    )


def _users_modules() -> list[str]:
    """The top-level modules of the user's folders on ``sys.path`` (installed code left out: a
    name close to one of its hundreds of modules is no hint)."""
    from .usercode import installed_roots

    roots = installed_roots()
    folders = [
        folder
        for folder in (entry or "." for entry in sys.path)  # "": the current folder
        if Path(folder).is_dir() and not any(Path(folder).resolve().is_relative_to(r) for r in roots)
    ]
    return [m.name for m in pkgutil.iter_modules(folders)]
