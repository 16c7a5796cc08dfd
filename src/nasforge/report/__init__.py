"""See and ship results: HTML reports, comparisons, architecture drawings and model export.

The CLI subcommands live in ``nasforge.report.commands`` (``register(subparsers)``). The
names below load their module on first use, so importing the package (as the CLI does to
register its subcommands) does not import matplotlib or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Drawing": "nasforge.report.draw",
    "draw_genome": "nasforge.report.draw",
    "draw_to_file": "nasforge.report.draw",
    "find_dot": "nasforge.report.draw",
    "genome_from_source": "nasforge.report.draw",
    "EXPORT_FORMATS": "nasforge.report.export",
    "ExportError": "nasforge.report.export",
    "ExportResult": "nasforge.report.export",
    "export_model": "nasforge.report.export",
    "load_state_dict_export": "nasforge.report.export",
    "meta_path_for": "nasforge.report.export",
    "COMPARE_SECTION_IDS": "nasforge.report.html",
    "SECTION_IDS": "nasforge.report.html",
    "load_snapshot": "nasforge.report.html",
    "render_compare": "nasforge.report.html",
    "render_report": "nasforge.report.html",
    "write_compare": "nasforge.report.html",
    "write_report": "nasforge.report.html",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from nasforge.report.draw import Drawing, draw_genome, draw_to_file, find_dot, genome_from_source
    from nasforge.report.export import (
        EXPORT_FORMATS,
        ExportError,
        ExportResult,
        export_model,
        load_state_dict_export,
        meta_path_for,
    )
    from nasforge.report.html import (
        COMPARE_SECTION_IDS,
        SECTION_IDS,
        load_snapshot,
        render_compare,
        render_report,
        write_compare,
        write_report,
    )


def __getattr__(name: str) -> Any:
    """Load an exported name from its module on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nasforge.report' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
