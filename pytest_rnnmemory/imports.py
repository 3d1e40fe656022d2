"""Resolving the ``package.module:Class`` paths that name a user's own task or cell."""

from __future__ import annotations

import importlib


def import_object(path: str, *, what: str, error: type[Exception]) -> object:
    """Import ``package.module:Name``; raise ``error`` with a message a user can act on."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise error(f"{what} {path!r}: an import path must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{what} {path!r}: cannot import module {module_name!r}: {exc}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise error(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj
