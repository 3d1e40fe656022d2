"""Finding suite files and reading their TOML, without importing the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import SuiteError


def read_toml(path: Path, label: str | Path | None = None) -> dict[str, Any]:
    """The TOML document at ``path``; a syntax error keeps its line and column."""
    try:
        # utf-8-sig: a file saved with a byte-order mark (as some Windows editors do) reads as one without
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{label or path}: invalid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError([f"{label or path}: cannot read the suite file: {exc}"]) from None


def suite_name(path: Path) -> str:
    """The name a suite file goes by: its ``suite.name``, else its stem (unreadable files: the stem)."""
    try:
        data = read_toml(path)
    except SuiteError:
        return path.stem
    named = data.get("suite", {}).get("name") if isinstance(data.get("suite"), dict) else None
    return named if isinstance(named, str) and named else path.stem


def suite_files(folder: Path) -> dict[str, list[Path]]:
    """The suite files of ``folder`` by the name each goes by (two files may claim one name)."""
    files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    named: dict[str, list[Path]] = {}
    for path in files:
        named.setdefault(suite_name(path), []).append(path)
    return named


def is_suite_file(path: Path) -> bool:
    """Whether a TOML file holds a ``[suite]`` table (a file whose TOML cannot be read may: it is a
    suite whose error its item reports)."""
    try:
        return isinstance(read_toml(path).get("suite"), dict)
    except SuiteError:
        return True
