"""Lazy re-exports (PEP 562) for a package's ``__init__``: a name is imported from its module
on first use, so importing the package imports none of its heavier modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``(__getattr__, __dir__)`` pair of package ``package`` (its ``__name__``), where
    ``exports`` maps each re-exported name to the module that defines it. A name is imported
    on first access and then kept in the package's namespace; another name raises
    ``AttributeError``, as a missing module attribute does."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
