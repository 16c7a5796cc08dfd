"""Node operations of the global space: a registry of factories with declared shape rules.

Every operation declares how it changes the channel count (``"N"``: the width C, ``"H"``:
C/2 but at least 1, ``"keep"``: the input's channels) and the spatial size (nominal kernel,
stride, padding mode), so shapes and parameter counts are computed without allocating weights.

A kernel larger than its input map is clamped to the map size, per dimension (pools too);
:func:`resolve` gives the effective geometry and :func:`op_text` shows the effective kernel.

The default set is the 12 REMNet operations (``REMNET_OPERATIONS``): conv2N conv3N conv5N
conv2H conv3H conv5H (stride 1, no padding; conv -> ReLU6 -> BatchNorm -> Dropout2d(0.1)) and
avgpool2/3/5, maxpool2/3/5 (kernel = stride). Extra operations, usable by naming them in a
space's ``operations``: padded convs (``conv3N_pad``: same size), stride-2 convs
(``conv3N_s2``), separable convs (``sep3N``: depthwise + pointwise, no padding) and
``identity``. Users add their own with :func:`register_operation`.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from nasforge.errors import ConfigError

ChannelRule = Literal["N", "H", "keep"]
PaddingMode = Literal["valid", "same", "half"]
Shape = tuple[int, int, int]

__all__ = [
    "ALL_BUILTIN_OPERATIONS",
    "REMNET_OPERATIONS",
    "OpGeometry",
    "Operation",
    "available_operations",
    "get_operation",
    "op_params",
    "op_text",
    "out_channels_for",
    "register_operation",
    "resolve",
]


@dataclass(frozen=True)
class OpGeometry:
    """The resolved shape of one operation at one place in a network.

    ``kernel`` is the effective (clamped) kernel; ``padding`` is explicit per dimension or
    ``"same"`` (stride 1 only).
    """

    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str


OpFactory = Callable[[OpGeometry], nn.Module]
ParamCounter = Callable[[OpGeometry], int]


@dataclass(frozen=True)
class Operation:
    """A registered node operation.

    ``kernel`` is the nominal kernel (None: kernel-less, e.g. identity); ``stride`` an int or
    ``"kernel"`` (stride = effective kernel, as in pools); ``padding`` ``"valid"`` (none),
    ``"same"`` (output size = input size; stride 1) or ``"half"`` ((k-1)//2 per side).
    ``stem``/``suffix`` make the text form ``{stem}{k}{suffix}({channels})``. ``params``
    counts parameters from a geometry without weights; None counts a build on the meta device.
    """

    name: str
    factory: OpFactory
    channels: ChannelRule = "keep"
    kernel: int | None = None
    stride: int | str = 1
    padding: PaddingMode = "valid"
    stem: str = ""
    suffix: str = ""
    params: ParamCounter | None = None


_OPERATIONS: dict[str, Operation] = {}


def register_operation(
    name: str,
    factory: OpFactory,
    *,
    channels: ChannelRule = "keep",
    kernel: int | None = None,
    stride: int | str = 1,
    padding: PaddingMode = "valid",
    stem: str | None = None,
    suffix: str = "",
    params: ParamCounter | None = None,
    overwrite: bool = False,
) -> Operation:
    """Register a node operation under ``name`` and return it.

    ``factory(geometry) -> nn.Module`` builds the module for a resolved :class:`OpGeometry`;
    the module must map (B, in_channels, *in_size) to (B, out_channels, *out_size). A worker
    process that builds genomes using the operation must register it too (e.g. on import).
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ConfigError(f"operation name must be alphanumeric/underscore, got {name!r}")
    if name in _OPERATIONS and not overwrite:
        raise ConfigError(f"operation {name!r} is already registered (pass overwrite=True)")
    if channels not in ("N", "H", "keep"):
        raise ConfigError(f"operation {name!r}: channels must be 'N', 'H' or 'keep'")
    if kernel is not None and (not isinstance(kernel, int) or kernel < 1):
        raise ConfigError(f"operation {name!r}: kernel must be a positive int or None")
    if not (stride == "kernel" or (isinstance(stride, int) and stride >= 1)):
        raise ConfigError(f"operation {name!r}: stride must be a positive int or 'kernel'")
    if padding not in ("valid", "same", "half"):
        raise ConfigError(f"operation {name!r}: padding must be 'valid', 'same' or 'half'")
    if padding == "same" and stride != 1:
        raise ConfigError(f"operation {name!r}: padding 'same' needs stride 1")
    if not callable(factory):
        raise ConfigError(f"operation {name!r}: factory must be callable")
    op = Operation(
        name=name,
        factory=factory,
        channels=channels,
        kernel=kernel,
        stride=stride,
        padding=padding,
        stem=name if stem is None else stem,
        suffix=suffix,
        params=params,
    )
    _OPERATIONS[name] = op
    return op


def available_operations() -> list[str]:
    """Names of the registered operations, sorted."""
    return sorted(_OPERATIONS)


def get_operation(name: str) -> Operation:
    """The registered operation ``name``; ConfigError lists the known ones otherwise."""
    try:
        return _OPERATIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown operation {name!r}; known: {', '.join(available_operations())}"
        ) from None


def is_registered(name: str) -> bool:
    """Whether an operation named ``name`` is registered."""
    return name in _OPERATIONS


def out_channels_for(op: Operation, in_channels: int, width: int) -> int:
    """Output channels of ``op`` on ``in_channels`` inputs at width C = ``width``."""
    if op.channels == "N":
        return width
    if op.channels == "H":
        return max(1, width // 2)
    return in_channels


def resolve(op: Operation, in_shape: Shape, width: int) -> OpGeometry:
    """The effective geometry of ``op`` on an input of shape (C, H, W) at ``width``.

    The kernel is clamped to the input map, per dimension; the output size follows
    ``floor((size + 2 * pad - kernel) / stride) + 1`` (or equals the input for ``"same"``).
    """
    c, h, w = in_shape
    nominal = 1 if op.kernel is None else op.kernel
    kernel = (min(nominal, h), min(nominal, w))
    stride = kernel if op.stride == "kernel" else (int(op.stride), int(op.stride))
    padding: tuple[int, int] | str
    if op.padding == "same":
        padding = "same"
        out_size = (h, w)
    else:
        if op.padding == "half":
            padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        else:
            padding = (0, 0)
        out_size = (
            (h + 2 * padding[0] - kernel[0]) // stride[0] + 1,
            (w + 2 * padding[1] - kernel[1]) // stride[1] + 1,
        )
    return OpGeometry(
        in_channels=c,
        out_channels=out_channels_for(op, c, width),
        in_size=(h, w),
        out_size=out_size,
        kernel=kernel,
        stride=stride,
        padding=padding,
    )


@functools.lru_cache(maxsize=4096)
def _meta_params(op: Operation, geometry: OpGeometry) -> int:
    with torch.device("meta"):
        module = op.factory(geometry)
    return sum(p.numel() for p in module.parameters())


def op_params(op: Operation, geometry: OpGeometry) -> int:
    """Parameters of ``op`` at ``geometry``, without allocating weights."""
    if op.params is not None:
        return int(op.params(geometry))
    return _meta_params(op, geometry)


def op_text(
    op: Operation,
    width: int | None = None,
    kernel: tuple[int, int] | None = None,
    channels: int | None = None,
) -> str:
    """Text form of a node: ``conv3(32)``, ``avgpool5``, ``identity``.

    ``kernel`` is the effective (clamped) kernel when the input size is known (shown as ``3``,
    or ``3x2`` when not square), else the nominal one is shown. Channel-setting operations show
    ``channels`` if given, else the count at ``width``, else ``C`` or ``C/2``.
    """
    if op.kernel is None:
        text = op.stem + op.suffix
    else:
        if kernel is None:
            k = str(op.kernel)
        else:
            kh, kw = kernel
            k = str(kh) if kh == kw else f"{kh}x{kw}"
        text = f"{op.stem}{k}{op.suffix}"
    if op.channels == "keep":
        return text
    if channels is not None:
        return f"{text}({channels})"
    if width is not None:
        return f"{text}({out_channels_for(op, 0, width)})"
    return f"{text}({'C' if op.channels == 'N' else 'C/2'})"


# ------------------------------------------------------------------ built-in operations
_DROPOUT = 0.1


def _conv_block(geometry: OpGeometry) -> nn.Module:
    """conv -> ReLU6 -> BatchNorm -> Dropout2d(0.1), the published order.

    "same" padding of an even kernel is an explicit asymmetric zero pad (extra row/column at
    the bottom/right, as PyTorch's padding="same" does) in front of an unpadded conv.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    padding = geometry.padding
    if padding == "same":
        kh, kw = geometry.kernel
        layers["pad"] = nn.ZeroPad2d(((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
        padding = (0, 0)
    layers["conv"] = nn.Conv2d(
        geometry.in_channels,
        geometry.out_channels,
        geometry.kernel,
        stride=geometry.stride,
        padding=padding,
    )
    layers["act"] = nn.ReLU6()
    layers["bn"] = nn.BatchNorm2d(geometry.out_channels)
    layers["drop"] = nn.Dropout2d(_DROPOUT)
    return nn.Sequential(layers)


def _conv_params(geometry: OpGeometry) -> int:
    kh, kw = geometry.kernel
    cout = geometry.out_channels
    return geometry.in_channels * cout * kh * kw + cout + 2 * cout


def _sep_block(geometry: OpGeometry) -> nn.Module:
    """Depthwise conv -> pointwise conv -> ReLU6 -> BatchNorm -> Dropout2d(0.1)."""
    cin = geometry.in_channels
    return nn.Sequential(
        OrderedDict(
            depthwise=nn.Conv2d(
                cin, cin, geometry.kernel, stride=geometry.stride,
                padding=geometry.padding, groups=cin,
            ),
            pointwise=nn.Conv2d(cin, geometry.out_channels, 1),
            act=nn.ReLU6(),
            bn=nn.BatchNorm2d(geometry.out_channels),
            drop=nn.Dropout2d(_DROPOUT),
        )
    )


def _sep_params(geometry: OpGeometry) -> int:
    kh, kw = geometry.kernel
    cin, cout = geometry.in_channels, geometry.out_channels
    return cin * kh * kw + cin + cin * cout + cout + 2 * cout


def _avgpool(geometry: OpGeometry) -> nn.Module:
    return nn.AvgPool2d(geometry.kernel, stride=geometry.stride)


def _maxpool(geometry: OpGeometry) -> nn.Module:
    return nn.MaxPool2d(geometry.kernel, stride=geometry.stride)


def _identity(geometry: OpGeometry) -> nn.Module:
    return nn.Identity()


def _no_params(geometry: OpGeometry) -> int:
    return 0


REMNET_OPERATIONS: tuple[str, ...] = (
    "conv2N", "conv3N", "conv5N", "conv2H", "conv3H", "conv5H",
    "avgpool2", "avgpool3", "avgpool5", "maxpool2", "maxpool3", "maxpool5",
)


def _register_builtins() -> tuple[str, ...]:
    names: list[str] = []
    for k in (2, 3, 5):
        for rule in ("N", "H"):
            register_operation(
                f"conv{k}{rule}", _conv_block, channels=rule, kernel=k, stem="conv",
                params=_conv_params,
            )
            register_operation(
                f"conv{k}{rule}_pad", _conv_block, channels=rule, kernel=k, padding="same",
                stem="conv", suffix="_pad", params=_conv_params,
            )
            names += [f"conv{k}{rule}", f"conv{k}{rule}_pad"]
    for k in (3, 5):
        for rule in ("N", "H"):
            register_operation(
                f"conv{k}{rule}_s2", _conv_block, channels=rule, kernel=k, stride=2,
                padding="half", stem="conv", suffix="_s2", params=_conv_params,
            )
            register_operation(
                f"sep{k}{rule}", _sep_block, channels=rule, kernel=k, stem="sep",
                params=_sep_params,
            )
            names += [f"conv{k}{rule}_s2", f"sep{k}{rule}"]
    for k in (2, 3, 5):
        register_operation(f"avgpool{k}", _avgpool, kernel=k, stride="kernel", stem="avgpool",
                           params=_no_params)
        register_operation(f"maxpool{k}", _maxpool, kernel=k, stride="kernel", stem="maxpool",
                           params=_no_params)
        names += [f"avgpool{k}", f"maxpool{k}"]
    register_operation("identity", _identity, params=_no_params)
    names.append("identity")
    return tuple(names)


ALL_BUILTIN_OPERATIONS: tuple[str, ...] = _register_builtins()
