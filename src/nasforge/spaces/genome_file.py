"""Genome files (``GENOME.json``): what ``nasforge space sample --json`` writes, and what
``space show``, ``train``, ``draw`` and ``search --init-from`` read.

A genome file holds one genome as a JSON object, several as a JSON list, or several as JSON
lines (one object per line, as ``space sample --json`` prints them). An object with a
``genome`` key and no ``schema`` key (a trial from ``nasforge trials --json`` or an export's
metadata) stands for its genome. ``-`` reads standard input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nasforge.errors import GenomeError


def genome_payload(item: Any) -> Any:
    """The genome mapping inside ``item``: the item itself, or its ``genome`` value when it
    is a wrapper (a trial or export metadata) rather than a genome."""
    if isinstance(item, dict) and "genome" in item and "schema" not in item:
        return item["genome"]
    return item


def read_genome_items(path: str | Path) -> list[Any]:
    """The genome mappings of a genome file, in file order (not yet parsed by a space).

    Raises GenomeError (one line naming the file, and the line for JSON lines) when the file
    is missing, unreadable, not UTF-8, empty, not JSON or nested too deeply."""
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            text = sys.stdin.read()
        else:
            p = Path(path)
            if not p.is_file():
                raise GenomeError(f"genome file {path} not found")
            text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:  # a binary file, or another encoding
        raise GenomeError(f"{name}: not UTF-8 text (byte {exc.start}); a genome file holds "
                          "JSON") from None
    except OSError as exc:
        raise GenomeError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    try:
        return _parse_items(text, name)
    except RecursionError:  # json's parser recurses once per nesting level
        raise GenomeError(f"{name}: JSON nested too deeply to be a genome") from None


def _parse_items(text: str, name: str) -> list[Any]:
    """The genome mappings in ``text`` (one JSON value, or JSON lines)."""
    if not text.strip():
        raise GenomeError(f"{name}: empty; a genome file holds JSON, e.g. the output of "
                          "`nasforge space sample --json --n 1`")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError:
                where = f" (line {number})" if number > 1 else ""
                raise GenomeError(f"{name}: not valid JSON{where}: {whole}") from None
        return [genome_payload(item) for item in items]
    return [genome_payload(item) for item in (data if isinstance(data, list) else [data])]


def read_one_genome_item(path: str | Path) -> Any:
    """The single genome mapping of a genome file; GenomeError when it holds several."""
    items = read_genome_items(path)
    if len(items) != 1:
        raise GenomeError(
            f"{path} holds {len(items)} genomes; this command takes one: keep one line, e.g. "
            "`nasforge space sample --json --n 1 > GENOME.json`")
    return items[0]
