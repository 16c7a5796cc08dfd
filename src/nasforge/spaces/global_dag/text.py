"""The text forms of a global-space genome: the one-line description and the Graphviz
drawing (``GlobalSpace.describe`` and ``GlobalSpace.to_dot``, kept here as a mixin).
"""

from __future__ import annotations

from nasforge.errors import GenomeError
from nasforge.spaces.builder import NetworkPlan
from nasforge.spaces.global_dag.genome import INPUT, OUTPUT, GlobalGenome
from nasforge.spaces.merge import MergePolicy
from nasforge.spaces.ops import get_operation, is_registered, op_text


class GlobalTextMixin:
    """:meth:`describe` and :meth:`to_dot` of :class:`~nasforge.spaces.global_dag.GlobalSpace`;
    they use the space's ``canonical``, ``plan`` and ``merge_policy``."""

    merge_policy: MergePolicy

    def _texts(
        self, canon: GlobalGenome, width: int | None, input_shape: tuple[int, int, int] | None
    ) -> tuple[dict[str, str], NetworkPlan | None]:
        plan = None
        if input_shape is not None:
            try:
                plan = self.plan(canon, input_shape, 1, width if width is not None else 2)
            except GenomeError:
                plan = None
        texts: dict[str, str] = {}
        planned = {p.label: p for p in plan.nodes} if plan is not None else {}
        for n in canon.nodes:
            if not is_registered(n.op):
                texts[n.id] = f"{n.op}?"
                continue
            op = get_operation(n.op)
            p = planned.get(n.id)
            if p is None:
                texts[n.id] = op_text(op, width)
            else:
                channels = p.geometry.out_channels if width is not None else None
                texts[n.id] = op_text(op, width, kernel=p.geometry.kernel, channels=channels)
        return texts, plan

    def describe(
        self,
        genome: GlobalGenome,
        width: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> str:
        """A one-line text form of the canonical network.

        Layered chains read ``in -> conv3(32) -> avgpool5 -> {conv3(16), conv3(16)} -> out``
        (braces: parallel nodes whose outputs are merged); other DAGs list nodes with their
        inputs, ``n1=conv2(128)(in); n2=conv3(64)(n1,in); out=sum(n1,n2)``. With
        ``input_shape`` the effective (clamped) kernels are shown.
        """
        try:
            canon = self.canonical(genome)
        except GenomeError as exc:
            return f"invalid genome: {exc}"
        if not canon.edges:
            return "in -/- out (no enabled path)"
        texts, _ = self._texts(canon, width, input_shape)
        stages = _layered_stages(canon)
        if stages is not None:
            parts = ["in"]
            for stage in stages:
                items = [texts[v] for v in stage]
                parts.append(items[0] if len(items) == 1 else "{" + ", ".join(items) + "}")
            parts.append("out")
            return " -> ".join(parts)
        preds: dict[str, list[str]] = {n.id: [] for n in canon.nodes}
        preds[OUTPUT] = []
        for e in canon.edges:
            preds[e.dst].append(e.src)
        combine = self.merge_policy.combine
        items = [f"{n.id}={texts[n.id]}({','.join(preds[n.id])})" for n in canon.nodes]
        outs = preds[OUTPUT]
        items.append(f"out={combine}({','.join(outs)})" if len(outs) > 1 else f"out={outs[0]}")
        return "; ".join(items)

    def to_dot(
        self,
        genome: GlobalGenome,
        width: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> str:
        """A Graphviz DOT digraph of the canonical network (with shapes given
        ``input_shape``)."""
        canon = self.canonical(genome)
        texts, plan = self._texts(canon, width, input_shape)
        shapes: dict[str, str] = {}
        if plan is not None and width is not None:
            shapes = {p.label: "x".join(map(str, p.out_shape)) for p in plan.nodes}
            shapes[OUTPUT] = "x".join(map(str, plan.out_shape))
        if input_shape is not None:
            shapes[INPUT] = "x".join(map(str, input_shape))

        def label(name: str, text: str) -> str:
            full = f"{text}\\n{shapes[name]}" if name in shapes else text
            return f'  "{name}" [label="{full}"];'

        combine = self.merge_policy.combine
        lines = [
            "digraph genome {",
            "  rankdir=TB;",
            '  node [shape=box, style="rounded"];',
            label(INPUT, "in"),
        ]
        lines += [label(n.id, texts[n.id]) for n in canon.nodes]
        out_inputs = sum(1 for e in canon.edges if e.dst == OUTPUT)
        lines.append(label(OUTPUT, f"out ({combine})" if out_inputs > 1 else "out"))
        lines += [f'  "{e.src}" -> "{e.dst}";' for e in canon.edges]
        lines.append("}")
        return "\n".join(lines) + "\n"


def _layered_stages(canon: GlobalGenome) -> list[list[str]] | None:
    """Stages of a layered canonical genome (every node of a stage takes exactly all nodes
    of the previous stage as inputs, and the output takes the last stage), else None."""
    preds: dict[str, set[str]] = {n.id: set() for n in canon.nodes}
    preds[OUTPUT] = set()
    for e in canon.edges:
        preds[e.dst].add(e.src)
    depth = {INPUT: 0}
    for n in canon.nodes:  # canonical order is topological
        depth[n.id] = 1 + max(depth[p] for p in preds[n.id])
    last = max(depth.values())
    stages: list[list[str]] = [[INPUT]] + [[] for _ in range(last)]
    for n in canon.nodes:
        stages[depth[n.id]].append(n.id)
    for d in range(1, last + 1):
        for v in stages[d]:
            if preds[v] != set(stages[d - 1]):
                return None
    if preds[OUTPUT] != set(stages[last]):
        return None
    return stages[1:]


__all__ = ["GlobalTextMixin"]
