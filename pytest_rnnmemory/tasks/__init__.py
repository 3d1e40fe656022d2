"""The task registry: built-in tasks by name, user tasks by import path."""

from __future__ import annotations

from ..errors import TaskError
from ..imports import import_object
from .adding import Adding
from .addition import Addition
from .base import IGNORE, Task, parameter_problem, scored_steps, unscored
from .bitwise_or import BitwiseOr
from .latching import Latching
from .parity import Parity
from .recall import Recall
from .relay import Relay
from .xor_delay import XorDelay

#: Built-in tasks, by the name a suite uses (defined in docs/TASKS.md).
TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Latching, Relay, XorDelay, Addition, BitwiseOr, Recall, Parity, Adding)
}


def is_user_task(name: str) -> bool:
    """Whether ``name`` is a user's own task (code the suite imports), not one this package knows."""
    return name not in TASKS


def task_class(name: str) -> type[Task]:
    """The task class for a built-in name or a ``package.module:Class`` path."""
    if name in TASKS:
        return TASKS[name]
    if ":" not in name:
        raise TaskError(
            f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}; "
            "or name your own as 'package.module:Class'"
        )
    cls = import_object(name, what="task", error=TaskError)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"task {name!r} is not a subclass of pytest_rnnmemory.tasks.Task")
    return cls


def make_task(name: str, params: dict[str, float] | None = None) -> Task:
    """An instance of the task ``name`` with the suite's ``[task]`` parameters."""
    return task_class(name)(**(params or {}))


__all__ = [
    "IGNORE",
    "TASKS",
    "Task",
    "is_user_task",
    "make_task",
    "parameter_problem",
    "scored_steps",
    "task_class",
    "unscored",
]
