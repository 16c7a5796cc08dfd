"""Studies about search itself: the reduced-training (fidelity) study and its report."""

from __future__ import annotations

__all__ = ["fidelity"]
