"""Merge policies: how several inputs of a node (or of the output) are aligned and combined.

A :class:`MergePolicy` says, field by field:

- ``spatial``: ``"interpolate"`` (nearest-neighbour resize) or ``"pad"`` (zero-pad, centred;
  towards a smaller target it centre-crops), to the ``spatial_target`` map: ``"smallest"``
  or ``"largest"`` height and width, taken per dimension over the inputs;
- ``channels``: ``"conv1x1"`` (a 1x1 convolution with bias, only on inputs whose count differs
  from the ``channel_target``: ``"smallest"`` or ``"largest"`` count) or ``"none"``;
- ``combine``: ``"sum"`` (element-wise) or ``"concat"`` (along channels).

``channels="none"`` leaves channel counts alone. With ``"concat"`` that is always buildable;
with ``"sum"`` it is only valid when all inputs share a channel count: otherwise the genome is
*invalid* for that policy (``merge_problems`` names the node, ``validate_for`` reports it and
``build`` raises ``GenomeError``). Channels are aligned first, then the spatial size.

``MERGE_POLICIES`` holds the named policies; ``"remnet"`` is the published one: nearest
interpolation to the smallest map, a 1x1 convolution to the smallest channel count, sum.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import ConfigError

Shape = tuple[int, int, int]

__all__ = [
    "MERGE_POLICIES",
    "Merge",
    "MergePolicy",
    "get_merge_policy",
    "merge_output_shape",
    "merge_params",
    "merge_problems",
]

_CHOICES: dict[str, tuple[str, ...]] = {
    "spatial": ("interpolate", "pad"),
    "spatial_target": ("smallest", "largest"),
    "channels": ("conv1x1", "none"),
    "channel_target": ("smallest", "largest"),
    "combine": ("sum", "concat"),
}


@dataclass(frozen=True)
class MergePolicy:
    """How inputs are aligned (spatial size, then channels) and combined (sum or concat)."""

    spatial: str = "interpolate"
    spatial_target: str = "smallest"
    channels: str = "conv1x1"
    channel_target: str = "smallest"
    combine: str = "sum"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"merge policy {name}={value!r} is not one of {', '.join(allowed)}"
                )

    def to_dict(self) -> dict[str, str]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergePolicy:
        """Build from a dict of fields; unknown fields are a ConfigError."""
        unknown = set(data) - set(_CHOICES)
        if unknown:
            raise ConfigError(
                f"unknown merge policy field(s) {sorted(unknown)}; known: {sorted(_CHOICES)}"
            )
        return cls(**dict(data))


MERGE_POLICIES: Mapping[str, MergePolicy] = {
    "remnet": MergePolicy("interpolate", "smallest", "conv1x1", "smallest", "sum"),
    "pad-largest-sum": MergePolicy("pad", "largest", "conv1x1", "largest", "sum"),
    "interp-largest-sum": MergePolicy("interpolate", "largest", "conv1x1", "largest", "sum"),
    "interp-smallest-concat": MergePolicy("interpolate", "smallest", "none", "smallest", "concat"),
    "pad-largest-concat": MergePolicy("pad", "largest", "none", "largest", "concat"),
}


def get_merge_policy(policy: str | MergePolicy | Mapping[str, Any]) -> MergePolicy:
    """A policy from its name in ``MERGE_POLICIES``, a dict of fields, or a policy."""
    if isinstance(policy, MergePolicy):
        return policy
    if isinstance(policy, str):
        if policy not in MERGE_POLICIES:
            raise ConfigError(
                f"unknown merge policy {policy!r}; known: {', '.join(sorted(MERGE_POLICIES))}"
            )
        return MERGE_POLICIES[policy]
    if isinstance(policy, Mapping):
        return MergePolicy.from_dict(policy)
    raise ConfigError(f"merge policy must be a name, a dict or a MergePolicy, got {policy!r}")


def policy_name(policy: MergePolicy) -> str | None:
    """The name of ``policy`` in ``MERGE_POLICIES``, or None for a custom one."""
    for name, known in MERGE_POLICIES.items():
        if known == policy:
            return name
    return None


def _pick(values: Sequence[int], target: str) -> int:
    return min(values) if target == "smallest" else max(values)


def _targets(shapes: Sequence[Shape], policy: MergePolicy) -> tuple[int | None, int, int]:
    """(channel target or None when channels are left alone, height, width)."""
    th = _pick([s[1] for s in shapes], policy.spatial_target)
    tw = _pick([s[2] for s in shapes], policy.spatial_target)
    tc = None if policy.channels == "none" else _pick([s[0] for s in shapes], policy.channel_target)
    return tc, th, tw


def merge_problems(shapes: Sequence[Shape], policy: MergePolicy) -> list[str]:
    """Why these inputs cannot be merged under ``policy`` (empty when they can)."""
    if len(shapes) > 1 and policy.channels == "none" and policy.combine == "sum":
        counts = sorted({s[0] for s in shapes})
        if len(counts) > 1:
            return [
                f"channel counts {', '.join(map(str, counts))} differ and merge policy "
                "channels='none' cannot sum them"
            ]
    return []


def merge_output_shape(shapes: Sequence[Shape], policy: MergePolicy) -> Shape:
    """The shape (C, H, W) the merge of ``shapes`` produces (a single input passes through)."""
    if len(shapes) == 1:
        c, h, w = shapes[0]
        return c, h, w
    tc, th, tw = _targets(shapes, policy)
    counts = [s[0] if tc is None else tc for s in shapes]
    channels = sum(counts) if policy.combine == "concat" else counts[0]
    return channels, th, tw


def merge_params(shapes: Sequence[Shape], policy: MergePolicy) -> int:
    """Parameters of the merge's 1x1 convolutions, without allocating them."""
    if len(shapes) == 1:
        return 0
    tc, _, _ = _targets(shapes, policy)
    if tc is None:
        return 0
    return sum(s[0] * tc + tc for s in shapes if s[0] != tc)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return x
    if mode == "interpolate":
        return F.interpolate(x, size=(th, tw), mode="nearest")
    if h > th or w > tw:  # centre-crop the dimensions that are too large
        top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
        x = x[..., top : top + min(h, th), left : left + min(w, tw)]
        h, w = x.shape[-2:]
    dh, dw = th - h, tw - w
    if dh or dw:
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    return x


class Merge(nn.Module):
    """Aligns several inputs of known shapes per a :class:`MergePolicy` and combines them."""

    def __init__(self, shapes: Sequence[Shape], policy: MergePolicy) -> None:
        super().__init__()
        problems = merge_problems(shapes, policy)
        if problems:
            raise ValueError(problems[0])
        self.policy = policy
        self.in_shapes = [tuple(s) for s in shapes]
        self.out_shape = merge_output_shape(shapes, policy)
        tc, th, tw = _targets(shapes, policy)
        self.size = (th, tw)
        self.align = nn.ModuleList(
            nn.Conv2d(s[0], tc, 1) if tc is not None and s[0] != tc else nn.Identity()
            for s in shapes
        )

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Align every input, then sum or concatenate them."""
        if len(inputs) == 1:
            return inputs[0]
        aligned = [
            _resize(layer(x), self.size, self.policy.spatial)
            for layer, x in zip(self.align, inputs)
        ]
        if self.policy.combine == "concat":
            return torch.cat(aligned, dim=1)
        out = aligned[0]
        for x in aligned[1:]:
            out = out + x
        return out

    def extra_repr(self) -> str:
        """The policy and the shapes it merges."""
        return f"{self.policy}, in={self.in_shapes}, out={self.out_shape}"
