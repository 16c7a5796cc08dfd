"""nasforge: neural architecture search on PyTorch.

``nasforge.load_study(path)`` opens a stored study read-only (``nasforge.study``); it is
loaded on first use, so ``import nasforge`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["StoredStudy", "__version__", "load_study"]

if TYPE_CHECKING:  # pragma: no cover
    from nasforge.study import StoredStudy, load_study


def __getattr__(name: str) -> Any:
    """``load_study`` and ``StoredStudy``, imported from ``nasforge.study`` on first use."""
    if name in ("load_study", "StoredStudy"):
        from nasforge import study

        return getattr(study, name)
    raise AttributeError(f"module 'nasforge' has no attribute {name!r}")
