"""A user's cell or task that fails while a case trains: which code, in which phase, and its own frames.

The engine runs a user's code in phases (building the cell, its forward pass,
the backward pass, the optimizer's step, drawing the task's data). An
exception raised there becomes a :class:`UserCodeError` that names the code
and the phase; its report shows the frames of the user's files, without
torch's, pytest's or this package's own, as pytest cuts its own frames from a
failing test function's traceback.
"""

from __future__ import annotations

import contextlib
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from pathlib import Path

from .errors import RnnMemoryError

INIT, FORWARD, EVALUATION, BACKWARD, STEP, DATA = (
    "building it",
    "its forward pass",
    "its forward pass in eval mode (validation, the metrics or the gradient diagnostic)",
    "the backward pass",
    "the optimizer's step",
    "drawing its data",
)


#: Packages whose frames are never the user's, where they are loaded.
NOT_USERS = ("torch", "_pytest", "pytest", "pluggy", "functorch")


def installed_roots() -> tuple[Path, ...]:
    """Where code lives that is not the user's: this package, torch, pytest, pluggy, the standard
    library and installed packages."""
    paths = sysconfig.get_paths()
    roots = [Path(__file__).parent]
    roots += [Path(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    for name in NOT_USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.append(Path(module.__file__).parent)
    return tuple(root.resolve() for root in roots)


def is_users_file(filename: str, roots: tuple[Path, ...] | None = None) -> bool:
    """Whether ``filename`` is a source file of the user's own: a file that exists, outside
    installed code (``roots``: :func:`installed_roots`, computed once by a caller that asks often)."""
    path = Path(filename)
    if not path.is_absolute() or not path.is_file():  # "<frozen ...>", a name without a folder
        return False
    resolved = path.resolve()
    return not any(resolved.is_relative_to(root) for root in roots or installed_roots())


def code_root(code: str | None) -> Path | None:
    """The folder of the loaded package (or the file of the module) that holds the user's ``code``
    (``package.module:Name``), wherever it is installed; ``None`` where it is not loaded, or is not
    the user's (torch's, pytest's, this package's)."""
    if not code or ":" not in code:
        return None
    module = sys.modules.get(code.partition(":")[0].partition(".")[0])
    source = getattr(module, "__file__", None)
    if not isinstance(source, str) or not Path(source).is_file():
        return None
    path = Path(source).resolve()
    root = path.parent if path.name == "__init__.py" else path
    theirs = [Path(__file__).parent.resolve()]
    for name in NOT_USERS:
        loaded = sys.modules.get(name)
        if loaded is not None and getattr(loaded, "__file__", None):
            theirs.append(Path(loaded.__file__).parent.resolve())
    return None if any(root.is_relative_to(other) for other in theirs) else root


def user_frames(error: BaseException, code: str | None = None) -> list[traceback.FrameSummary]:
    """The frames of ``error``'s traceback in the user's own files, outermost first: files outside
    installed code, and those of the package of the user's ``code`` where it is installed (a user's
    cells installed with pip are theirs too)."""
    roots, own = installed_roots(), code_root(code)
    return [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if is_users_file(f.filename, roots) or (own is not None and _inside(f.filename, own))
    ]


def _inside(filename: str, root: Path) -> bool:
    path = Path(filename)
    return path.is_absolute() and path.is_file() and path.resolve().is_relative_to(root)


def where(error: BaseException, code: str | None = None) -> str:
    """Where in the user's code ``error`` arose, as ``" (at path:line, in function)"``, its innermost
    frame of theirs (``code``: the user's ``package.module:Name`` that raised, whose package is theirs
    wherever it is installed); empty where none of its frames is the user's."""
    frames = user_frames(error, code)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno}, in {last.name})"


class UserCodeError(RnnMemoryError):
    """A user's cell or task raised while a case trained."""

    def __init__(self, kind: str, name: str, phase: str, error: BaseException) -> None:
        self.kind, self.name, self.phase, self.error = kind, name, phase, error
        super().__init__(f"{kind} {name!r} failed in {phase}: {type(error).__name__}: {error}")

    def frames(self) -> list[traceback.FrameSummary]:
        """The frames of the user's own files, outermost first."""
        return user_frames(self.error, self.name)

    def describe(self, case: str) -> str:
        """The report of a failing case: the first line names code, case and phase; then the user's frames."""
        lines = [f"{self.kind} {self.name!r} failed in {self.phase} in case {case}"]
        frames = self.frames()
        if frames:
            lines.append("  the error arose in your code:")
            lines += ["  " + line for line in "".join(traceback.format_list(frames)).rstrip().splitlines()]
        # every line of the message under the frames, as a traceback indents them all
        message = f"{type(self.error).__name__}: {self.error}".splitlines()
        lines += ["  " + line for line in message]
        return "\n".join(lines)


@contextlib.contextmanager
def user_code(kind: str, name: str, phase: str, *, active: bool = True) -> Iterator[None]:
    """Run a phase of a user's cell or task ``name``; its exceptions become :class:`UserCodeError`."""
    if not active:
        yield
        return
    try:
        yield
    except RnnMemoryError:
        raise
    except Exception as exc:
        raise UserCodeError(kind, name, phase, exc) from exc
