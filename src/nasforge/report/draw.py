"""Architecture drawings: a genome's Graphviz DOT rendered by the ``dot`` program, with the
genome's text form as the fallback when ``dot`` is missing.

Where ``dot`` comes from is injectable (``find_dot``), so both paths are testable.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError, GenomeError, NasforgeError

DotFinder = Callable[[], str | None]
"""Returns the path of the Graphviz ``dot`` program, or None when there is none."""

FORMATS: tuple[str, ...] = ("png", "svg", "pdf", "dot")
_DOT_TIMEOUT = 60.0


class DrawError(NasforgeError):
    """Graphviz failed to render a drawing."""


def find_dot() -> str | None:
    """The ``dot`` program on PATH, or None."""
    return shutil.which("dot")


def render_dot(source: str, fmt: str = "png", dot: str | None = None, dpi: int = 96) -> bytes:
    """Render DOT ``source`` to ``fmt`` (png, svg, pdf) with the ``dot`` program."""
    program = dot or find_dot()
    if program is None:
        raise DrawError("Graphviz `dot` not found (apt-get install graphviz)")
    cmd = [program, f"-T{fmt}", "-Nfontname=DejaVu Sans,Helvetica,Arial", "-Nfontsize=11",
           "-Gnodesep=0.3", "-Granksep=0.3", "-Nmargin=0.12,0.04", "-Nheight=0.4"]
    if fmt == "png":
        cmd.append(f"-Gdpi={dpi}")
    try:
        proc = subprocess.run(cmd, input=source.encode(), capture_output=True,
                              timeout=_DOT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DrawError(f"Graphviz `dot` failed: {exc}") from None
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DrawError(f"Graphviz `dot` failed: {err[-1] if err else 'no output'}")
    return proc.stdout


def _accepts_input_shape(method: Callable[..., Any]) -> bool:
    try:
        return "input_shape" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def genome_text(space: Any, genome: Any, width: int | None = None,
                input_shape: tuple[int, int, int] | None = None) -> str:
    """The space's one-line text form of ``genome`` (with shapes when the space takes them)."""
    if input_shape is not None and _accepts_input_shape(space.describe):
        return str(space.describe(genome, width, input_shape=input_shape))
    return str(space.describe(genome, width))


def genome_dot(space: Any, genome: Any, width: int | None = None,
               input_shape: tuple[int, int, int] | None = None) -> str | None:
    """The space's DOT source for ``genome``, or None when the space cannot draw."""
    try:
        if input_shape is not None and _accepts_input_shape(space.to_dot):
            return str(space.to_dot(genome, width, input_shape=input_shape))
        return str(space.to_dot(genome, width))
    except NotImplementedError:
        return None


@dataclass
class Drawing:
    """A rendered architecture: the bytes, their format, and whether Graphviz drew it."""

    data: bytes
    fmt: str
    graphviz: bool
    text: str
    dot_source: str | None


def draw_genome(
    space: Any,
    genome: Any,
    fmt: str = "png",
    width: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    find_dot: DotFinder = find_dot,
    title: str | None = None,
) -> Drawing:
    """Draw ``genome`` as ``fmt`` (png, svg, pdf, or dot for the source): Graphviz when
    ``find_dot()`` finds the program, else a picture of the text form."""
    if fmt not in FORMATS:
        raise ConfigError(f"cannot draw to {fmt!r}; use one of {', '.join(FORMATS)}")
    text = genome_text(space, genome, width, input_shape)
    source = genome_dot(space, genome, width, input_shape)
    if fmt == "dot":
        if source is None:
            raise DrawError(f"space {space.name!r} cannot describe genomes as DOT")
        return Drawing(source.encode(), fmt, False, text, source)
    dot = find_dot()
    if source is not None and dot is not None:
        if title:
            source = source.replace("{", f'{{\n  label="{_dot_escape(title)}"; labelloc=t;', 1)
        return Drawing(render_dot(source, fmt, dot), fmt, True, text, source)
    from nasforge.report.plots import genome_text_image

    return Drawing(genome_text_image(text, title, fmt), fmt, False, text, source)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def input_shape_hint(data: dict[str, Any]) -> tuple[int, int, int] | None:
    """The input shape of a study's data section without loading Fashion-MNIST (a fixed
    1x28x28); other data sets are loaded (cheap for synthetic and .npz); None on failure."""
    name = str(data.get("dataset", "")).strip().lower()
    if name in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return (1, 28, 28)
    try:
        from nasforge.execution.tasks import load_splits

        return tuple(load_splits(data).input_shape)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a drawing without shapes is still a drawing
        return None


@dataclass
class GenomeSource:
    """A genome to draw with the space it belongs to and the width and shape to annotate."""

    space: Any
    genome: Any
    width: int | None
    input_shape: tuple[int, int, int] | None
    label: str


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenomeError(f"{path}: not valid JSON ({exc})") from None


def genome_from_source(
    source: str | Path,
    trial: int | None = None,
    space_name: str | None = None,
    width: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> GenomeSource:
    """A genome from a JSON file (a genome, or a dict with ``genome`` and optionally
    ``space``/``width``/``input_shape``, as exports write) or from a study database (trial
    ``trial``, else the best trial)."""
    from nasforge.spaces import get_space

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    if path.suffix.lower() == ".json":
        if trial is not None:
            raise ConfigError("--trial applies to a study database, not a genome file")
        from nasforge.spaces.genome_file import read_genome_items

        items = read_genome_items(path)
        data = _read_json(path) if len(items) == 1 else None
        if len(items) != 1:  # JSON lines or a list, as `space sample --json` writes
            if len(items) > 1:
                raise GenomeError(f"{path} holds {len(items)} genomes; draw takes one")
            raise GenomeError(f"{path} holds no genome")
        if isinstance(data, list):
            data = data[0]
        space_cfg: dict[str, Any] = {"name": space_name or "global", "settings": {}}
        if isinstance(data, dict) and "genome" in data and "schema" not in data:
            if isinstance(data.get("space"), dict) and space_name is None:
                space_cfg = {"name": data["space"].get("name", "global"),
                             "settings": data["space"].get("settings") or {}}
            width = width if width is not None else data.get("width")
            if input_shape is None and data.get("input_shape"):
                input_shape = tuple(data["input_shape"])  # type: ignore[assignment]
            data = data["genome"]
        space = get_space(space_cfg["name"], **space_cfg["settings"])
        try:
            genome = space.genome_from_dict(data)
        except NasforgeError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        return GenomeSource(space, genome, width, input_shape, path.stem)
    from nasforge.study import load_study, space_of_config

    study = load_study(path)
    cfg = study.raw_config
    if trial is not None:
        record = study.trial(trial)
    else:
        best = study.best(1)
        if not best:
            raise ConfigError(f"{path} has no successful trial; pick one with --trial N")
        record = best[0]
    space = study.space if space_name is None else space_of_config(cfg, space_name)
    from nasforge.storage.records import trial_genome

    genome = trial_genome(space, record, path)
    if width is None:
        width = record.budget.get("width", cfg.get("budget", {}).get("width"))
    if input_shape is None:
        input_shape = input_shape_hint(cfg.get("data", {}))
    return GenomeSource(space, genome, width, input_shape, f"{study.name} trial {record.number}")


def draw_to_file(
    src: GenomeSource,
    out: str | Path,
    find_dot: DotFinder = find_dot,
    fmt: str | None = None,
) -> Drawing:
    """Draw ``src`` into ``out``; the format is ``fmt`` or the file's suffix."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"cannot tell the drawing format from {out.name!r}; "
                          f"use a .png, .svg, .pdf or .dot file")
    drawing = draw_genome(src.space, src.genome, fmt, src.width, src.input_shape, find_dot)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(drawing.data)
    except OSError as exc:
        raise ConfigError(f"cannot write the drawing to {out}: {exc.strerror or exc}") from None
    return drawing
