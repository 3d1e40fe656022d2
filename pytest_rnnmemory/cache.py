"""Finished cases, stored at once, so that an interrupted or repeated run loses no work.

A case's entry is keyed by a hash of everything that determines its result:
the case's full configuration and seed, the versions of this package and
torch, the device type, and the source code that trains it (this package's
own modules, and the module of a user's cell or task with every module of the
user's that its names or its import statements reach), so that editing a cell,
a base class it inherits from another file, or a helper its forward imports,
does not return a stale answer. An entry that cannot be
read, or that was written for another key, is ignored with a warning and
trained again.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import sys
import warnings
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import __version__
from .atomic import write_atomic
from .errors import StoredDataError
from .recipes import Search
from .records import CaseRecord
from .runtime import torch_version
from .usercode import installed_roots, is_users_file

if TYPE_CHECKING:
    from .suite import Case


class CacheWarning(UserWarning):
    """A stored result that could not be used."""


@functools.cache
def _package_source() -> str:
    """A hash of this package's own source files, Python and C (an edited engine must not reuse results)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _module_source(import_path: str) -> str | None:
    """A hash of the user's code behind ``package.module:Name``: the file of its module and of every
    module of the user's that it reaches through its names, transitively (``None`` for built-in
    names)."""
    if ":" not in import_path:
        return None
    files = _user_files(importlib.import_module(import_path.partition(":")[0]))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _user_files(module: ModuleType) -> list[Path]:
    """The source files of ``module`` and of the user's modules it reaches: through its names
    (modules, classes and functions, and the classes of other objects) and through the import
    statements in its source, a function's too (a module imported only when a forward runs),
    followed from module to module (namespace packages, which have no file, through their names);
    installed code (the standard library, site-packages) and this package, which versions pin,
    are not followed."""
    roots = installed_roots()
    seen: set[str] = set()
    files: set[Path] = set()
    waiting: list[ModuleType | str] = [module]
    while waiting:
        current = waiting.pop()
        if isinstance(current, str):  # imported in a source file, not (yet) loaded: read, not run
            if current not in seen:
                seen.add(current)
                _follow_unloaded(current, roots, files, waiting)
            continue
        if current.__name__ in seen or current.__name__ == "__main__":
            continue
        seen.add(current.__name__)
        source = getattr(current, "__file__", None)
        if isinstance(source, str) and (
            is_users_file(source, roots) or (current is module and Path(source).is_file())
        ):
            files.add(Path(source).resolve())
            waiting += _imports_of(Path(source), _package_of(current.__name__, source))
        elif source is not None or not hasattr(current, "__path__"):
            continue  # installed, built in, or a file that is not there (torch.ops says "_ops.py")
        for value in list(vars(current).values()):
            name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if not isinstance(name, str):
                name = type(value).__module__
            reached = sys.modules.get(name)
            if reached is not None and reached.__name__ not in seen:
                waiting.append(reached)
    return sorted(files)


def _package_of(name: str, source: str) -> str:
    """The package relative imports in module ``name`` (whose file is ``source``) start from."""
    return name if Path(source).name == "__init__.py" else name.rpartition(".")[0]


def _imports_of(path: Path, package: str) -> list[ModuleType | str]:
    """The modules a source file imports anywhere in it: loaded ones, or their names."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                try:
                    base = importlib.util.resolve_name("." * node.level + base, package)
                except (ImportError, ValueError):
                    continue
            # ``from a import b`` names module a, and module a.b where b is one
            names += [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
    return [_loaded_or_name(name) for name in dict.fromkeys(names) if name]


def _loaded_or_name(name: str) -> ModuleType | str:
    """Module ``name`` where it is loaded, else its name (also where ``sys.modules`` holds ``None``
    for it, as a test blocking an optional import sets: a name that finds nothing)."""
    module = sys.modules.get(name)
    return module if module is not None else name


def _follow_unloaded(name: str, roots: tuple[Path, ...], files: set[Path], waiting: list) -> None:
    """Add the user's file of module ``name``, which is not loaded, and queue what it imports and
    the package it is in (whose ``__init__`` an import runs first), without running any of it."""
    spec = _spec_of(name)
    origin = spec.origin if spec is not None else None
    if spec is None or not origin or not spec.has_location or not is_users_file(origin, roots):
        return
    files.add(Path(origin).resolve())
    parent = name.rpartition(".")[0]
    package = name if spec.submodule_search_locations is not None else parent
    waiting += _imports_of(Path(origin), package)
    if parent:
        waiting.append(_loaded_or_name(parent))


def _spec_of(name: str) -> ModuleSpec | None:
    """Where module ``name`` would be found, looked up package by package from the nearest loaded
    one (or ``sys.path``), importing nothing; ``None`` where it is not found."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent = name.rpartition(".")[0]
    search = None  # a top-level module: sys.path
    if parent:
        above = _spec_of(parent)
        search = None if above is None else above.submodule_search_locations
        if search is None:
            return None  # no such package, or a module that is not one (the name is an attribute)
    try:
        return importlib.machinery.PathFinder.find_spec(name, None if search is None else list(search))
    except (ImportError, ValueError, AttributeError):
        return None


def case_key(case: Case, device_type: str) -> str:
    """The key of one case's result: its configuration, the recipe its record names, the versions,
    the device type and the code."""
    # A grid's only recipe trains as the same values written in [train] do, one configuration, but
    # the record names the grid's recipe, which a report checks against the grid.
    recipe = case.recipe
    named = {"recipe": recipe.to_json()} if recipe is not None and recipe.values else {}
    return _key({**case.configuration(), **named}, device_type)


def search_key(case: Case, device_type: str) -> str:
    """The key of the recipe search a cell shares across its lengths (``search.scope = "cell"``)."""
    configuration = {k: v for k, v in case.configuration().items() if k not in ("length", "eval_lengths")}
    return _key({**configuration, "stored": "search of the cell"}, device_type)


def _key(configuration: dict[str, Any], device_type: str) -> str:
    material = {
        "settings": configuration,
        "pytest_rnnmemory": __version__,
        "torch": torch_version(),
        "device": device_type,
        "code": _package_source(),
        "cell_code": _module_source(configuration["cell"]),
        "task_code": _module_source(configuration["task"]),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


class ResultCache:
    """One JSON file per finished case in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key[:32]}.json"

    def has(self, key: str) -> bool:
        """Whether an entry is stored under ``key`` (whether it can be used is :meth:`get`'s to say)."""
        return self._path(key).exists()

    def get(self, key: str) -> CaseRecord | None:
        """The stored record for ``key``, or ``None`` (with a warning if an entry was unusable)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("key") != key:
                raise ValueError("it was stored for another case")
            record = CaseRecord.from_json(entry.get("record"), "record")
        except (OSError, ValueError, StoredDataError) as exc:
            warnings.warn(
                CacheWarning(f"ignored the stored result {path}: {exc}; the case is trained again"),
                stacklevel=2,
            )
            return None
        return record.stored()

    def put(self, key: str, record: CaseRecord) -> None:
        """Store ``record`` at once, whole or not at all."""
        write_atomic(self._path(key), json.dumps({"key": key, "record": record.to_json()}))

    def get_search(self, key: str) -> Search | None:
        """The stored search for ``key``, or ``None`` (with a warning if an entry was unusable)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("key") != key:
                raise ValueError("it was stored for another search")
            return Search.from_json(entry.get("search"))
        except (OSError, ValueError, StoredDataError) as exc:
            warnings.warn(
                CacheWarning(f"ignored the stored search {path}: {exc}; the recipes are tuned again"),
                stacklevel=2,
            )
            return None

    def put_search(self, key: str, search: Search) -> None:
        write_atomic(self._path(key), json.dumps({"key": key, "search": search.to_json()}))
