"""Hand-designed reference networks (searched networks are built by the search spaces)."""

from __future__ import annotations

from nasforge.models.baseline import BaselineCNN, baseline_cnn

__all__ = ["BaselineCNN", "baseline_cnn"]
