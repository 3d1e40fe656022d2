"""Reading stored JSON into typed records: every value checked, every error naming its place.

Reports, baselines and stored cases are JSON that a run wrote and a later run
reads back. A file edited by hand, cut short or written by another version
must give one line that says where it is wrong (``cases[3].trials[0].metric:
expected a number, got "x"``), never a KeyError from deep inside a report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import StoredDataError

T = TypeVar("T")


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


class Fields:
    """One JSON object, read key by key; ``where`` is its place in the document."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise StoredDataError(f"{where or 'the document'}: expected an object, got {_show(data)}")
        self.data = data
        self.where = where

    def at(self, key: str) -> str:
        """The place of ``key`` in the document."""
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise StoredDataError(f"{self.at(key)}: missing")
        return self.data[key]

    def integer(self, key: str, minimum: int | None = None) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            raise StoredDataError(f"{self.at(key)}: expected an integer{bound}, got {_show(value)}")
        return value

    def number(self, key: str, *, optional: bool = False) -> float:
        value = self.raw(key)
        if optional and value is None:
            return None  # type: ignore[return-value]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise StoredDataError(f"{self.at(key)}: expected a finite number, got {_show(value)}")
        return value

    def optional_number(self, key: str) -> float | None:
        return self.number(key, optional=True) if self.has(key) else None

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise StoredDataError(f"{self.at(key)}: expected true or false, got {_show(value)}")
        return value

    def text(self, key: str, *, optional: bool = False) -> str:
        value = self.raw(key)
        if optional and value is None:
            return None  # type: ignore[return-value]
        if not isinstance(value, str):
            raise StoredDataError(f"{self.at(key)}: expected a string, got {_show(value)}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(key)
        if value not in allowed:
            raise StoredDataError(f"{self.at(key)}: expected one of {', '.join(allowed)}, got {_show(value)}")
        return value

    def objects(self, key: str, read: Callable[[Any, str], T]) -> tuple[T, ...]:
        """A list of objects, each read by ``read(value, where)``."""
        values = self.raw(key)
        if not isinstance(values, list):
            raise StoredDataError(f"{self.at(key)}: expected a list, got {_show(values)}")
        return tuple(read(value, f"{self.at(key)}[{i}]") for i, value in enumerate(values))

    def numbers(self, key: str, *, nullable: bool = False) -> tuple[float | None, ...]:
        """A list of finite numbers (``null`` allowed where ``nullable``)."""
        values = self.raw(key)
        if not isinstance(values, list):
            raise StoredDataError(f"{self.at(key)}: expected a list of numbers, got {_show(values)}")
        for i, value in enumerate(values):
            if nullable and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise StoredDataError(f"{self.at(key)}[{i}]: expected a finite number, got {_show(value)}")
        return tuple(values)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw(key)
        if not isinstance(value, dict):
            raise StoredDataError(f"{self.at(key)}: expected an object, got {_show(value)}")
        return value

    def fields(self, key: str) -> Fields:
        return Fields(self.raw(key), self.at(key))
