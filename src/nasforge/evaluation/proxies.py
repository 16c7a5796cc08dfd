"""Zero-cost proxies: scores of an UNTRAINED network from a few mini-batches.

Each proxy takes a freshly initialised model and a batch (normalised float images ``x`` and
labels ``y``) and returns a :class:`ProxyScore`. A proxy never raises: when it cannot score a
network (no ReLU-like activation for NASWOT, an overflow, a singular kernel, an exception in the
forward pass) it returns ``value=None`` with a ``reason``. Every proxy works on a deep copy, so
the caller's model (its weights, its BatchNorm statistics, its mode) is left untouched.

Higher is better for every proxy (as in the literature), so rankings are by descending value.

Mode handling, per the papers' reference code:

- ``synflow`` (Tanaka et al., 2020): float64 copy, eval mode (BatchNorm uses its initial running
  statistics, i.e. an almost-identity affine map; dropout off), every parameter replaced by its
  absolute value, an all-ones input of one image, ``R = sum(model(1))``; the score is
  ``sum |theta * dR/dtheta|``. With non-negative weights and a non-negative input every
  pre-activation is non-negative, so ReLU is the identity; ReLU6/Hardtanh would instead clip at
  6 and zero the gradient of a deep net, so clipping activations are replaced by the identity
  (the linearised network synflow is defined on). If the float64 sum still overflows, the
  input is rescaled by powers of 1/16 (a linear network's score scales by a known factor) and
  the log of the rescaled score plus the correction is reported; the score is the *log10* of
  synflow throughout (a monotone transform, so ranks are unchanged, and finite for deep nets).
- ``snip`` (Lee et al., 2019), ``grad_norm`` and ``fisher`` (Theis et al., 2018; Turner et al.,
  2020): train mode for BatchNorm (batch statistics, as in the zero-cost-proxies code) with
  dropout switched off (so the score is deterministic), cross-entropy on the batch.
  snip = ``sum |theta * dL/dtheta|`` over conv/linear weights; grad_norm = sum over conv/linear
  layers of ``||dL/dW||_2``; fisher = sum over conv/linear outputs ``a`` and channels of
  ``0.5 * mean_n (sum_hw a * dL/da)^2``.
- ``naswot`` (Mellor et al., 2021): binary codes ``c = [pre-activation > 0]`` of every
  ReLU/ReLU6 module over the batch, kernel ``K = c c^T + (1-c)(1-c)^T`` (N x N), score
  ``logdet(K + I)`` (``slogdet``). The identity ridge keeps the score finite when two images
  share a code (then ``det K = 0``: Mellor's score is -inf, the worst); K's entries count
  activation units (tens to thousands), so for a non-singular K the ridge hardly moves the
  score. Missing when the network has no ReLU-like module.
- ``jacob_cov`` (Mellor et al., 2020, v1): eval mode, per-image Jacobian of the summed logits
  w.r.t. the input, correlation matrix of the N Jacobians, score
  ``-sum(log(lambda + k) + 1/(lambda + k))`` with ``k = 1e-5``.
- ``params`` and ``flops``: the baselines every proxy is compared to (``count_params`` and
  ``count_flops``).

``rank_vote`` combines proxies over a *set* of networks: the mean of their ranks (the
zero-cost-proxies paper's vote used synflow, jacob_cov and snip; that is the default).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from nasforge.errors import ConfigError
from nasforge.evaluation.metrics import count_flops, count_params
from nasforge.registry import Registry

__all__ = [
    "DEFAULT_VOTE",
    "PROXIES",
    "ProxyScore",
    "available_proxies",
    "compute_proxies",
    "compute_proxy",
    "rank_vote",
]

DEFAULT_VOTE: tuple[str, ...] = ("synflow", "jacob_cov", "snip")
"""The proxies of the literature's vote (Abdelfattah et al., 2021)."""

_RELU_LIKE = (nn.ReLU, nn.ReLU6)
_CLIPPING = (nn.ReLU6, nn.Hardtanh)
_JACOB_K = 1e-5


@dataclass(frozen=True)
class ProxyScore:
    """One proxy's score of one network: ``value`` (None when missing, with ``reason``) and the
    wall-clock seconds it took."""

    name: str
    value: float | None
    reason: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the proxy produced a finite score."""
        return self.value is not None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready form."""
        return {"name": self.name, "value": self.value, "reason": self.reason,
                "seconds": self.seconds}


# ---------------------------------------------------------------------- helpers
def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _dropout_off(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()


def _finite(name: str, value: float) -> tuple[float | None, str | None]:
    if math.isfinite(value):
        return float(value), None
    return None, f"{name} is not finite ({value})"


def _ce_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    _dropout_off(model)
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()


# ---------------------------------------------------------------------- proxies
def _synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model).double().eval()
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _CLIPPING):
                setattr(module, child_name, nn.Identity())
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    shape = (1, *x.shape[1:])
    for scale_exp in range(0, 60, 4):  # input scaled by 2**-scale_exp on overflow
        net.zero_grad(set_to_none=True)
        ones = torch.full(shape, 2.0 ** -scale_exp, dtype=torch.float64)
        out = net(ones).sum()
        out.backward()
        with torch.no_grad():
            total = sum(
                (float((p * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None),
                0.0,
            )
        value = float(total)
        if math.isfinite(value) and math.isfinite(float(out.detach())):
            if value <= 0.0:
                raise _Missing("synflow is 0 (no gradient reaches the parameters)")
            # a rescaled input multiplies every path product by 2**-scale_exp
            return math.log10(value) + scale_exp * math.log10(2.0)
    raise _Missing("synflow overflows float64 even with a rescaled input")


def _snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _ce_backward(net, x, y)
    total = 0.0
    for m in _weighted_layers(net):
        if m.weight.grad is not None:
            total += float((m.weight.grad * m.weight.detach()).abs().sum())
    return total


def _grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _ce_backward(net, x, y)
    total = 0.0
    for m in _weighted_layers(net):
        if m.weight.grad is not None:
            total += float(m.weight.grad.norm(p=2))
    return total


def _fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    net.train()
    _dropout_off(net)
    outputs: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        if output.requires_grad:
            output.retain_grad()
            outputs.append(output)

    handles = [m.register_forward_hook(hook) for m in _weighted_layers(net)]
    try:
        net.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x).float(), y)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for a in outputs:
        if a.grad is None:
            continue
        prod = a.detach() * a.grad
        per_channel = prod.sum(dim=(2, 3)) if prod.dim() == 4 else prod
        total += float(0.5 * per_channel.pow(2).mean(0).sum())
    return total


def _naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    net.train()
    _dropout_off(net)
    acts = [m for m in net.modules() if isinstance(m, _RELU_LIKE)]
    if not acts:
        raise _Missing("no ReLU/ReLU6 activation: the activation-pattern kernel is undefined")
    n = int(x.shape[0])
    kernel = torch.zeros((n, n), dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.t() + (1.0 - codes) @ (1.0 - codes).t())

    handles = [m.register_forward_pre_hook(hook) for m in acts]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    kernel += torch.eye(n, dtype=torch.float64)
    sign, logdet = np.linalg.slogdet(kernel.numpy())
    if sign <= 0 or not math.isfinite(float(logdet)):
        raise _Missing("activation-pattern kernel is not positive definite")
    return float(logdet)


def _jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model).eval()
    xin = x.detach().clone().requires_grad_(True)
    net.zero_grad(set_to_none=True)
    out = net(xin)
    out.backward(torch.ones_like(out))
    if xin.grad is None:
        raise _Missing("no gradient reaches the input")
    jac = xin.grad.reshape(xin.shape[0], -1).double().numpy()
    if np.any(jac.std(axis=1) == 0):
        raise _Missing("an image's input Jacobian is constant (correlation undefined)")
    corrs = np.corrcoef(jac)
    eig = np.linalg.eigvalsh(corrs)
    eig = np.clip(eig, 0.0, None)  # round-off can make tiny eigenvalues negative
    return float(-np.sum(np.log(eig + _JACOB_K) + 1.0 / (eig + _JACOB_K)))


def _params(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(count_params(model))


def _flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(count_flops(model, tuple(x.shape[1:])))


class _Missing(Exception):
    """A proxy cannot score this network (the message is the reason)."""


ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]

PROXIES: Registry[ProxyFn] = Registry("proxy", sort_names=False)
"""The per-network proxies by name, in a fixed order, baselines last (``vote`` is computed over
a set by ``rank_vote``). ``PROXIES.register(name, fn)`` adds one: ``fn(model, x, y) -> float``,
higher is better, on an untrained model it must not change."""
for _name, _fn in (
    ("synflow", _synflow),
    ("snip", _snip),
    ("grad_norm", _grad_norm),
    ("naswot", _naswot),
    ("jacob_cov", _jacob_cov),
    ("fisher", _fisher),
    ("params", _params),
    ("flops", _flops),
):
    PROXIES.register(_name, _fn)
del _name, _fn


def available_proxies() -> list[str]:
    """Names of the per-network proxies, in a fixed order (baselines last)."""
    return PROXIES.names()


def compute_proxy(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ProxyScore:
    """Score the untrained ``model`` with one proxy on the batch ``(x, y)``; never raises.

    ``x`` are normalised float images [N, C, H, W], ``y`` int64 labels [N]. An unknown name, an
    exception or a non-finite value give a missing score with the reason.
    """
    started = time.perf_counter()
    try:
        fn = PROXIES.get(name)
    except ConfigError as exc:  # "unknown proxy 'x'; known: ..."
        return ProxyScore(name, None, str(exc))
    was_training = model.training
    try:
        with torch.enable_grad():
            raw = fn(model, x, y)
        value, reason = _finite(name, raw)
    except _Missing as exc:
        value, reason = None, str(exc)
    except Exception as exc:  # a proxy never brings down its caller
        value, reason = None, f"{type(exc).__name__}: {exc}"
    finally:
        model.train(was_training)
    return ProxyScore(name, value, reason, time.perf_counter() - started)


def compute_proxies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str] | None = None,
) -> dict[str, ProxyScore]:
    """Every named proxy (default: all of ``PROXIES``) of the untrained ``model`` on one batch."""
    chosen = list(names) if names is not None else available_proxies()
    return {name: compute_proxy(name, model, x, y) for name in chosen}


def rank_vote(
    scores: Mapping[str, Sequence[float | None]],
    members: Sequence[str] = DEFAULT_VOTE,
) -> list[float | None]:
    """The rank vote of several proxies over the same list of networks.

    For each member proxy the networks it scored are ranked (1 = lowest score, ties get their
    average rank, scipy ``rankdata``) and the ranks are rescaled to [0, 1] so a proxy that
    scored fewer networks weighs the same; a network's vote is the mean over the members that
    scored it (None if none did). Higher is better, like the proxies.
    """
    present = [m for m in members if m in scores]
    if not present:
        raise ValueError(f"rank_vote: none of the members {list(members)} is in the scores")
    n = len(scores[present[0]])
    sums = [0.0] * n
    counts = [0] * n
    for m in present:
        column = scores[m]
        if len(column) != n:
            raise ValueError(f"rank_vote: proxy {m!r} has {len(column)} scores, expected {n}")
        idx = [i for i, v in enumerate(column) if v is not None and math.isfinite(v)]
        if not idx:
            continue
        ranks = rankdata([column[i] for i in idx], method="average")
        span = max(len(idx) - 1, 1)
        for i, r in zip(idx, ranks):
            sums[i] += (float(r) - 1.0) / span
            counts[i] += 1
    return [s / c if c else None for s, c in zip(sums, counts)]
