"""DARTS genomes: plain, frozen, hashable data with JSON and the published genotype text.

A :class:`DartsGenome` holds a normal and a reduction :class:`DartsCell`. A cell has 2 input
nodes (index 0: the output of the cell before the previous one, 1: the previous cell's) and 4
intermediate nodes (indices 2..5); node ``k`` sums two (operation, input) pairs,
:class:`CellEdge`; the cell's output is the concatenation of nodes 2..5. The edges are kept
flat in the published genotype order (node ``k``'s pair at positions ``2(k-2)`` and
``2(k-2)+1``). Construction checks types only; :meth:`nasforge.spaces.darts.DartsSpace.validate`
checks the structure (distinct, earlier inputs; known operations).

**Text forms.** JSON (:meth:`DartsGenome.to_dict`, schema ``nasforge.darts/1``) and the
published genotype text ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3,
4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])`` (:meth:`DartsGenome.to_genotype`,
:meth:`DartsGenome.from_genotype`). The text is parsed with :mod:`ast` (syntax tree only,
literals read by ``ast.literal_eval``; nothing is executed); ``range(2, 6)`` is accepted for
the concat lists, which must name all four intermediate nodes (this space's output rule).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from nasforge.errors import GenomeError
from nasforge.spaces.darts_ops import STEPS

SCHEMA = "nasforge.darts/1"
CELL_TYPES = ("normal", "reduce")
CONCAT = tuple(range(2, 2 + STEPS))

__all__ = ["CELL_TYPES", "CONCAT", "CellEdge", "DARTS_V2", "DartsCell", "DartsGenome", "SCHEMA"]


# ====================================================================== genome
@dataclass(frozen=True)
class CellEdge:
    """One (operation, input node index) pair of a cell's node."""

    op: str
    input: int


@dataclass(frozen=True)
class DartsCell:
    """A cell's edges, flat, in genotype order (node ``2 + i`` owns ``edges[2i:2i+2]``)."""

    edges: tuple[CellEdge, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(self.edges))
        for e in self.edges:
            if not isinstance(e, CellEdge):
                raise GenomeError(f"cell edges must be CellEdge, got {type(e).__name__}")
            if not isinstance(e.op, str) or not e.op:
                raise GenomeError(f"edge operation must be a non-empty string, got {e.op!r}")
            if not isinstance(e.input, int) or isinstance(e.input, bool):
                raise GenomeError(f"edge input must be an int, got {e.input!r}")

    @classmethod
    def from_pairs(cls, pairs: Sequence[Sequence[Any]]) -> DartsCell:
        """From ``[(op, input), ...]``; GenomeError when an item is not a pair."""
        edges = []
        for item in pairs:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise GenomeError(f"a cell edge must be an (op, input) pair, got {item!r}")
            edges.append(CellEdge(item[0], item[1]))
        return cls(tuple(edges))

    def pairs(self) -> list[tuple[str, int]]:
        """The edges as ``[(op, input), ...]`` (the published genotype's form)."""
        return [(e.op, e.input) for e in self.edges]

    def nodes(self) -> list[tuple[CellEdge, ...]]:
        """The edges grouped per intermediate node (pairs; a trailing odd edge alone)."""
        return [self.edges[i : i + 2] for i in range(0, len(self.edges), 2)]


@dataclass(frozen=True)
class DartsGenome:
    """A DARTS genotype: a normal and a reduction cell (concat always nodes 2..5)."""

    normal: DartsCell
    reduce: DartsCell

    def __post_init__(self) -> None:
        for name in CELL_TYPES:
            if not isinstance(getattr(self, name), DartsCell):
                raise GenomeError(f"genome {name!r} must be a DartsCell")

    @classmethod
    def from_pairs(
        cls, normal: Sequence[Sequence[Any]], reduce: Sequence[Sequence[Any]]
    ) -> DartsGenome:
        """From two published-style lists of ``(op, input)`` pairs."""
        return cls(DartsCell.from_pairs(normal), DartsCell.from_pairs(reduce))

    def cell(self, kind: str) -> DartsCell:
        """The ``"normal"`` or ``"reduce"`` cell."""
        return self.normal if kind == "normal" else self.reduce

    # ------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """``{"schema", "normal": [[op, input], ...], "reduce": [...]}``."""
        return {
            "schema": SCHEMA,
            "normal": [[op, i] for op, i in self.normal.pairs()],
            "reduce": [[op, i] for op, i in self.reduce.pairs()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DartsGenome:
        """Parse :meth:`to_dict`'s form; GenomeError (one line) on unknown fields or schema."""
        if not isinstance(data, Mapping):
            raise GenomeError(f"genome must be a JSON object, got {type(data).__name__}")
        fields = set(data)
        if fields != {"schema", *CELL_TYPES}:
            extra, missing = (
                sorted(fields - {"schema", *CELL_TYPES}),
                sorted({"schema", *CELL_TYPES} - fields),
            )
            raise GenomeError(f"darts genome: unknown fields {extra}, missing {missing}")
        if data["schema"] != SCHEMA:
            raise GenomeError(f"unknown genome schema {data['schema']!r}; expected {SCHEMA!r}")
        for name in CELL_TYPES:
            if not isinstance(data[name], list):
                raise GenomeError(f"darts genome: {name!r} must be a list of [op, input] pairs")
        return cls.from_pairs(data["normal"], data["reduce"])

    # ------------------------------------------------------------- genotype text
    def to_genotype(self) -> str:
        """The published genotype text, e.g. ``Genotype(normal=[('sep_conv_3x3', 0), ...],
        normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])``."""
        concat = list(CONCAT)
        return (
            f"Genotype(normal={self.normal.pairs()!r}, normal_concat={concat!r}, "
            f"reduce={self.reduce.pairs()!r}, reduce_concat={concat!r})"
        )

    @classmethod
    def from_genotype(cls, text: str) -> DartsGenome:
        """Parse the published genotype text (keyword or positional fields; concat as a list
        or ``range(2, 6)``) without executing it; GenomeError (one line) otherwise."""
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise GenomeError(f"genotype text is not valid syntax: {exc.msg}") from None
        call = tree.body
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "Genotype"
        ):
            raise GenomeError(
                "genotype text must be Genotype(normal=..., normal_concat=..., reduce=..., "
                "reduce_concat=...)"
            )
        order = ("normal", "normal_concat", "reduce", "reduce_concat")
        if len(call.args) > len(order):
            raise GenomeError(f"Genotype takes at most {len(order)} fields")
        fields: dict[str, ast.expr] = dict(zip(order, call.args))
        for kw in call.keywords:
            if kw.arg not in order or kw.arg in fields:
                raise GenomeError(
                    f"Genotype: unknown or repeated field {kw.arg!r}; known: {', '.join(order)}"
                )
            fields[kw.arg] = kw.value
        for name in CELL_TYPES:
            if name not in fields:
                raise GenomeError(f"Genotype: missing field {name!r}")
            concat = _concat(fields.get(f"{name}_concat"))
            if concat != CONCAT:
                raise GenomeError(
                    f"Genotype: {name}_concat {list(concat)} not supported; this space "
                    f"concatenates all intermediate nodes {list(CONCAT)}"
                )
        cells = []
        for name in CELL_TYPES:
            try:
                pairs = ast.literal_eval(fields[name])
            except (ValueError, TypeError, SyntaxError):
                raise GenomeError(
                    f"Genotype: {name} must be a literal list of (op, input) pairs"
                ) from None
            if not isinstance(pairs, (list, tuple)):
                raise GenomeError(f"Genotype: {name} must be a list of (op, input) pairs")
            cells.append(DartsCell.from_pairs(pairs))
        return cls(cells[0], cells[1])


def _concat(node: ast.expr | None) -> tuple[int, ...]:
    """A concat field: a literal list/tuple of ints or ``range(a, b[, c])`` of int literals."""
    if node is None:
        return CONCAT
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        args = []
        for a in node.args:
            value = ast.literal_eval(a) if isinstance(a, (ast.Constant, ast.UnaryOp)) else None
            if not isinstance(value, int) or node.keywords:
                raise GenomeError("Genotype: range(...) in a concat field takes int literals only")
            args.append(value)
        if not 1 <= len(args) <= 3:
            raise GenomeError("Genotype: range(...) in a concat field takes 1 to 3 ints")
        return tuple(range(*args))
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise GenomeError("Genotype: a concat field must be a list of ints or range(...)") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise GenomeError("Genotype: a concat field must be a list of ints")
    return tuple(value)


DARTS_V2 = DartsGenome.from_pairs(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
)
"""The published second-order DARTS cell (``DARTS_V2``; 2.76% CIFAR-10 error). At C=36,
20 cells, 3x32x32 input, 10 classes: 3,349,342 parameters, 3,825,768 with the auxiliary
head (both checked in the tests)."""
