"""The one-shot search loop: a supernet's weights and architecture parameters trained in
turn on two disjoint halves of the training split (the validation split stays untouched for
the final ranking), then discretised to a genome of the space.

**Defaults are DARTS' published search settings** (Liu et al., ICLR 2019, Sec. 3.1.1):
weights by SGD, momentum 0.9, learning rate 0.025 annealed by a cosine schedule to 0.001,
weight decay 3e-4, gradient norm clipped at 5; architecture parameters by Adam, learning rate
3e-4, betas (0.5, 0.999), weight decay 1e-3; one architecture step before each weight step.

**First order** (``order=1``): the architecture step uses the gradient of the loss on an
architecture batch at the current weights (DARTS' eq. 6 with xi = 0).

**Second order** (``order=2``, DARTS Sec. 2.3): the architecture gradient is taken at the
weights after one virtual SGD step ``w' = w - xi * (momentum * buf + grad L_train + wd * w)``
(xi = the current weight learning rate, as the published code), minus ``xi`` times the mixed
Hessian-vector product ``d2 L_train / (d alpha d w) . grad_w' L_val``, approximated by central
finite differences with ``eps = 0.01 / ||grad_w' L_val||`` (eq. 7-8):
:func:`finite_difference_hvp`.

**GDAS** (``method="gumbel"``, Dong & Yang, CVPR 2019): each forward samples one operation
per edge by a hard Gumbel-softmax; the temperature falls linearly from ``tau_max`` 10 to
``tau_min`` 0.1 over the epochs (NAS-Bench-201's GDAS settings). Only the sampled op is
computed: about a fifth of DARTS' work per step on NB201.

**Early stopping on skip connections** (DARTS+, Liang et al. 2019, arXiv:1909.06035,
Sec. 3.2: stop "when there are two or more skip-connects in one normal cell"): with
``max_skips`` set, the search stops after the first epoch whose discretised cell holds more
than ``max_skips`` skip connections (DARTS+' rule is ``max_skips=1``), and returns the cell of
the last epoch within the limit (the current one if none was).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import ConfigError, NasforgeError
from nasforge.evaluation.groups import SingleProcess
from nasforge.execution.results import EvalResult
from nasforge.oneshot.discretise import cell_text, count_skips, discretise
from nasforge.oneshot.supernet import Supernet, build_supernet

ORDERS = (1, 2)


class SupernetDiverged(NasforgeError):
    """The supernet's loss became NaN or infinite."""


@dataclass(frozen=True)
class SupernetSettings:
    """How a supernet is searched (defaults: DARTS' published settings, see the module).

    ``method``: ``"softmax"`` (DARTS) or ``"gumbel"`` (GDAS); ``order``: 1 or 2 (softmax
    only); ``cells``: cells per stage (NB201) or in all (DARTS); ``exclude_none``: NB201
    discretisation without ``none``; ``max_skips``: early stop (None: off);
    ``eval_images``: images of the architecture half on which the supernet's accuracy is
    measured each epoch (0: all of it)."""

    method: str = "softmax"
    order: int = 1
    cells: int = 1
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    a_lr: float = 3e-4
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 1e-3
    tau_max: float = 10.0
    tau_min: float = 0.1
    fd_eps: float = 0.01
    exclude_none: bool = False
    max_skips: int | None = None
    eval_images: int = 2000

    def __post_init__(self) -> None:
        object.__setattr__(self, "a_betas", tuple(self.a_betas))
        if self.method not in ("softmax", "gumbel"):
            raise ConfigError(f"supernet method must be softmax or gumbel, got {self.method!r}")
        if self.order not in ORDERS:
            raise ConfigError(f"supernet order must be 1 or 2, got {self.order!r}")
        if self.order == 2 and self.method != "softmax":
            raise ConfigError("second order (unrolled) search is defined for DARTS' softmax only")
        if not isinstance(self.cells, int) or self.cells < 1:
            raise ConfigError(f"supernet cells must be a positive int, got {self.cells!r}")
        if self.max_skips is not None and (not isinstance(self.max_skips, int)
                                           or self.max_skips < 0):
            raise ConfigError(f"max_skips must be a non-negative int or None, got "
                              f"{self.max_skips!r}")
        for name in ("w_lr", "a_lr", "grad_clip", "fd_eps", "tau_max", "tau_min"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"supernet {name} must be positive, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``SupernetSettings(**d)`` rebuilds it."""
        d = asdict(self)
        d["a_betas"] = list(self.a_betas)
        return d


def finite_difference_hvp(loss_fn: Callable[[], torch.Tensor], weights: Sequence[torch.Tensor],
                          alphas: Sequence[torch.Tensor], vector: Sequence[torch.Tensor],
                          eps: float = 0.01) -> list[torch.Tensor]:
    """``d/d alpha (grad_w L . v)`` by central differences (DARTS eq. 8): with
    ``r = eps / ||v||``, ``(grad_alpha L(w + r v) - grad_alpha L(w - r v)) / (2 r)``.

    ``loss_fn()`` evaluates the loss at the current values of ``weights`` (moved in place and
    restored); returns one tensor per alpha, shaped like it."""
    norm = torch.sqrt(sum((v.detach() ** 2).sum() for v in vector))  # type: ignore[arg-type]
    r = eps / float(norm.clamp_min(1e-12))
    with torch.no_grad():
        for w, v in zip(weights, vector):
            w.add_(v, alpha=r)
    plus = torch.autograd.grad(loss_fn(), alphas, allow_unused=True)
    with torch.no_grad():
        for w, v in zip(weights, vector):
            w.sub_(v, alpha=2 * r)
    minus = torch.autograd.grad(loss_fn(), alphas, allow_unused=True)
    with torch.no_grad():
        for w, v in zip(weights, vector):
            w.add_(v, alpha=r)
    return [(torch.zeros_like(a) if p is None else (p - m) / (2 * r))
            for a, p, m in zip(alphas, plus, minus)]


def _unrolled_arch_grads(model: Supernet, w_opt: torch.optim.SGD, xi: float,
                         train_batch: tuple[torch.Tensor, torch.Tensor],
                         arch_batch: tuple[torch.Tensor, torch.Tensor],
                         settings: SupernetSettings, group: SingleProcess) -> None:
    """Set ``alpha.grad`` to DARTS' second-order gradient (eq. 7) for the next arch step.

    Under a data-parallel ``group`` the gradients of the virtual step and of the validation
    loss are averaged over the ranks (so every rank moves its weights alike and perturbs them
    along the same vector); the finite-difference term stays this rank's (the caller averages
    ``alpha.grad``, which averages it)."""
    weights, alphas = model.weight_parameters(), model.arch_parameters()
    xt, yt = train_batch
    xa, ya = arch_batch
    grads = group.average(torch.autograd.grad(F.cross_entropy(model(xt), yt), weights,
                                              allow_unused=True), weights)
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():  # the virtual step w' (momentum and weight decay as published)
        for w, g in zip(weights, grads):
            buf = w_opt.state.get(w, {}).get("momentum_buffer")
            step = (0.0 if g is None else g) + settings.w_weight_decay * w
            if buf is not None:
                step = step + settings.w_momentum * buf
            w.sub_(step, alpha=xi)
    val = F.cross_entropy(model(xa), ya)
    both = group.average(torch.autograd.grad(val, alphas + weights, allow_unused=True),
                         alphas + weights)
    d_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, both[:len(alphas)])]
    d_w = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, both[len(alphas):])]
    with torch.no_grad():
        for w, s in zip(weights, saved):
            w.copy_(s)
    hvp = finite_difference_hvp(lambda: F.cross_entropy(model(xt), yt), weights, alphas, d_w,
                                settings.fd_eps)
    for a, da, h in zip(alphas, d_alpha, hvp):
        a.grad = da - xi * h


def _finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise SupernetDiverged(f"non-finite supernet loss ({float(loss.detach()):.4g}) {where}")


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              prepare: Callable[[torch.Tensor], torch.Tensor], batch: int) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += int((model(prepare(x[i:i + batch])).argmax(-1) == y[i:i + batch]).sum())
    model.train()
    return correct / max(1, len(y))


@dataclass
class SearchOutcome:
    """What a supernet search gives back (all JSON-ready but ``genome``)."""

    genome: Any
    history: list[dict[str, Any]]
    supernet_acc: float
    stopped_early: bool
    params: int
    seconds: float


def fit_supernet(model: Supernet, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                 batch_size: int, settings: SupernetSettings, seed: int,
                 prepare: Callable[[torch.Tensor], torch.Tensor] = lambda t: t.float(),
                 max_steps: int | None = None,
                 after_epoch: Callable[[int, float], bool] | None = None,
                 device: str = "cpu", group: SingleProcess | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``model``'s weights and architecture parameters in turn on images ``x``
    [N, C, H, W] and labels ``y`` [N] (N >= 4): a seeded half of them for the weights, the
    other half for the architecture (one architecture step, then one weight step).

    ``prepare`` turns a batch of ``x`` into the network's float input (normalisation);
    ``max_steps`` caps steps per epoch; ``after_epoch(epoch, mean weight loss)`` runs after
    each epoch (1-based) and returns True to stop. Returns the (weight, architecture) index
    halves of ``x``. Raises SupernetDiverged on a NaN or infinite loss or parameter,
    ConfigError for bad sizes.

    ``group``: a data-parallel :class:`~nasforge.evaluation.ddp.RankGroup` (default: this
    process alone). Call it on every rank with the same model, data and seed: every rank
    draws the same batches and takes its share ``batch[rank::world]`` of both (``batch_size``
    is the global batch, divisible by the world), the gradients of the weights and of the
    architecture parameters and the loss are averaged over the ranks before each step, and
    every rank then takes the same step from the same values: the architecture parameters
    stay identical on every rank (and without batch norm the run is the one-process run on
    the global batch, up to float rounding of the averaging). GDAS' Gumbel samples come from
    torch's global generator, which starts alike on every rank (``seed``), so every rank
    samples the same cell each step."""
    group = SingleProcess() if group is None else group
    if len(y) < 4:
        raise ConfigError(f"a supernet search needs at least 4 training images, got {len(y)}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    half = len(y) // 2
    w_idx, a_idx = perm[:half], perm[half:]
    dev = torch.device(device)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=settings.w_lr,
                            momentum=settings.w_momentum, weight_decay=settings.w_weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, epochs, eta_min=settings.w_lr_min)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=settings.a_lr, betas=settings.a_betas,
                             weight_decay=settings.a_weight_decay)
    batch = max(2, min(batch_size, half))
    if group.world > 1:
        if batch_size % group.world:
            raise ConfigError(f"batch_size {batch_size} is the global batch and must be "
                              f"divisible by the {group.world} data-parallel ranks")
        batch -= batch % group.world
        if batch < 2 * group.world:
            raise ConfigError(f"a supernet batch of {batch} is too small for "
                              f"{group.world} data-parallel ranks")
    steps = max(1, half // batch)
    if max_steps is not None:
        steps = min(steps, max_steps)

    def get(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx[group.rank::group.world]  # this rank's share of the global batch
        return prepare(x[idx].to(dev)), y[idx].to(dev)

    alphas, weights = model.arch_parameters(), model.weight_parameters()

    for epoch in range(epochs):
        if settings.method == "gumbel":
            span = max(1, epochs - 1)
            model.tau = settings.tau_max - (settings.tau_max - settings.tau_min) * epoch / span
        xi = w_opt.param_groups[0]["lr"]
        w_order = w_idx[torch.randperm(half, generator=gen)]
        a_order = a_idx[torch.randperm(len(a_idx), generator=gen)]
        model.train()
        loss_sum = 0.0
        for step in range(steps):
            train_batch = get(w_order[step * batch:(step + 1) * batch])
            start = (step * batch) % max(1, len(a_order) - batch + 1)
            arch_batch = get(a_order[start:start + batch])
            where = f"at epoch {epoch + 1}, step {step + 1}"
            a_opt.zero_grad(set_to_none=True)
            if settings.order == 2:
                _unrolled_arch_grads(model, w_opt, xi, train_batch, arch_batch, settings, group)
                grads = group.average([a.grad for a in alphas], alphas)
            else:
                arch_loss = F.cross_entropy(model(arch_batch[0]), arch_batch[1])
                mean = arch_loss.detach().reshape(1)
                *grads, mean = group.average([*torch.autograd.grad(arch_loss, alphas), mean],
                                             [*alphas, mean])
                _finite(mean, where)  # type: ignore[arg-type]
            for a, g in zip(alphas, grads):
                a.grad = g
            if not all(a.grad is not None and torch.isfinite(a.grad).all() for a in alphas):
                raise SupernetDiverged(f"non-finite architecture gradient {where}")
            a_opt.step()
            w_opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train_batch[0]), train_batch[1])
            loss.backward()
            for a in alphas:  # the weights' step only
                a.grad = None
            mean = loss.detach().reshape(1)
            *grads, mean = group.average([*(w.grad for w in weights), mean], [*weights, mean])
            _finite(mean, where)  # type: ignore[arg-type]
            for w, g in zip(weights, grads):
                w.grad = g
            nn.utils.clip_grad_norm_(weights, settings.grad_clip)
            w_opt.step()
            loss_sum += float(mean)  # type: ignore[arg-type]
        sched.step()
        for a in alphas:
            if not torch.isfinite(a.detach()).all():
                raise SupernetDiverged(f"non-finite architecture parameters after epoch "
                                       f"{epoch + 1}")
        if after_epoch is not None and after_epoch(epoch + 1, loss_sum / steps):
            break
    return w_idx, a_idx


def search_supernet(space_name: str, operations: Sequence[str], x: torch.Tensor,
                    y: torch.Tensor, num_classes: int, *, width: int, epochs: int,
                    batch_size: int, settings: SupernetSettings, seed: int,
                    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda t: t.float(),
                    max_steps: int | None = None,
                    on_epoch: Callable[[dict[str, Any]], None] | None = None,
                    device: str = "cpu", group: SingleProcess | None = None) -> SearchOutcome:
    """Build the supernet of ``space_name`` (stem width ``width``), :func:`fit_supernet` it on
    ``x``, ``y`` and discretise it after every epoch; ``on_epoch`` gets each epoch's record
    (epoch, supernet accuracy on the architecture half, cell, skips, softmax of the alphas).
    Stops early per ``settings.max_skips``. Raises as :func:`fit_supernet`.

    ``group``: as :func:`fit_supernet`. Before each accuracy measurement rank 0's batch-norm
    statistics are broadcast (each rank's own are of its share of the batches) and each rank
    measures a contiguous part of the images, the counts summed; ``on_epoch`` is called on
    rank 0 only; every rank returns the same outcome."""
    group = SingleProcess() if group is None else group
    started = time.time()
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_supernet(space_name, tuple(x.shape[1:]), num_classes, width, settings.cells,
                           operations, settings.method).to(dev)
    gen = torch.Generator().manual_seed(seed)
    a_half = torch.randperm(len(y), generator=gen)[len(y) // 2:]  # fit_supernet's split
    eval_idx = a_half if settings.eval_images <= 0 else a_half[:settings.eval_images]
    history: list[dict[str, Any]] = []
    state: dict[str, Any] = {"chosen": None, "stopped": False, "acc": 0.0,
                             "clock": time.time()}

    def after_epoch(epoch: int, loss: float) -> bool:
        alphas = model.alphas()
        genome = discretise(space_name, alphas, operations, settings.exclude_none)
        skips = count_skips(genome)
        group.sync_buffers(model)
        lo, hi = group.shard(len(eval_idx))
        part = eval_idx[lo:hi]
        correct = _accuracy(model, x[part], y[part], lambda t: prepare(t.to(dev)),
                            max(batch_size, 256)) * len(part)
        correct, count = group.total([round(correct), len(part)])
        state["acc"] = correct / max(1.0, count)
        record = {
            "epoch": epoch, "val_acc": state["acc"], "train_loss": loss,
            "cell": cell_text(genome), "skips": skips,
            "alphas": {k: [[round(float(p), 5) for p in row] for row in torch.softmax(v, -1)]
                       for k, v in alphas.items()},
            "seconds": time.time() - state["clock"],
        }
        if settings.method == "gumbel":
            record["tau"] = model.tau
        history.append(record)
        if on_epoch is not None and group.primary:
            on_epoch(record)
        state["clock"] = time.time()
        if settings.max_skips is not None and skips > settings.max_skips:
            state["stopped"] = True
            state["chosen"] = state["chosen"] or genome
            return True
        state["chosen"] = genome
        return False

    fit_supernet(model, x, y, epochs=epochs, batch_size=batch_size, settings=settings,
                 seed=seed, prepare=prepare, max_steps=max_steps, after_epoch=after_epoch,
                 device=device, group=group)
    return SearchOutcome(genome=state["chosen"], history=history, supernet_acc=state["acc"],
                         stopped_early=state["stopped"],
                         params=sum(p.numel() for p in model.weight_parameters()),
                         seconds=time.time() - started)


def _progress(path: str | None) -> Callable[[dict[str, Any]], None] | None:
    if not path:
        return None

    def write(record: dict[str, Any]) -> None:
        short = {k: v for k, v in record.items() if k != "alphas"}
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(short) + "\n")
        except OSError:
            pass

    return write


def evaluate_supernet(task: Any, *, device: str | None = None,
                      group: SingleProcess | None = None) -> EvalResult:
    """The ``supernet`` kind of work, inside a worker's child process: search the supernet
    of ``task.space_name`` under ``task.budget`` (width = C, epochs, batch size, data
    fraction, max steps) with ``task.extra["supernet"]`` (:class:`SupernetSettings` fields),
    and return an :class:`~nasforge.execution.results.EvalResult` whose ``genome`` is the
    discretised genome (as the space's JSON), ``val_acc`` the supernet's accuracy on (part of) the architecture half of the training
    split, and ``metrics`` the per-epoch history (``alphas``, ``skips``, ``cell``,
    ``val_acc``). The budget's optimizer, learning rate, schedule, augmentation, label
    smoothing, test-time augmentation and speed options are not used: the supernet has its own (:class:`SupernetSettings`). Exceptions
    propagate: the ``supernet`` kind (:func:`nasforge.execution.tasks.guarded`) turns them
    into a failed result with the reason.

    ``device``: default ``evaluation_device()``. ``group``: a data-parallel rank group
    (``nasforge.execution.data_parallel`` runs this on every rank of a trial with
    ``devices_per_trial`` > 1; see :func:`fit_supernet`); only rank 0 writes progress lines,
    and every rank returns the same result."""
    from nasforge.evaluation.budget import Budget
    from nasforge.evaluation.metrics import Normalizer
    from nasforge.evaluation.trainer import set_determinism
    from nasforge.execution.devices import evaluation_device
    from nasforge.data.task_splits import load_splits
    from nasforge.spaces import get_space

    space = get_space(task.space_name, **task.space_settings)
    work = dict(task.extra.get("supernet") or {})
    work.pop("repeat", None)  # which search of a strategy this is: only seeds it (its key)
    settings = settings_from(work)
    budget = Budget.from_dict(task.budget)
    splits = load_splits(task.data)
    if budget.data_fraction < 1.0:
        splits = splits.subset_train(budget.data_fraction, task.model_seed % (2**31))
    device = device or evaluation_device()
    set_determinism(task.model_seed)
    operations = tuple(getattr(space, "operations", None) or ())
    if not operations:
        from nasforge.spaces.nb201_ops import OPERATIONS

        operations = OPERATIONS
    normalize = Normalizer(splits.mean, splits.std, device)
    outcome = search_supernet(
        task.space_name, operations, splits.train_x, splits.train_y, splits.num_classes,
        width=budget.width, epochs=budget.epochs, batch_size=budget.batch_size,
        settings=settings, seed=task.model_seed % (2**31), prepare=normalize,
        max_steps=budget.max_steps, on_epoch=_progress(task.progress_path), device=device,
        group=group)
    genome = space.genome_from_dict(space.genome_to_dict(outcome.genome))  # validated
    return EvalResult(
        status="ok",
        genome=space.genome_to_dict(genome),
        val_acc=outcome.supernet_acc,
        params=outcome.params,
        flops=None,
        curve=[{"epoch": h["epoch"], "val_acc": h["val_acc"], "train_loss": h["train_loss"]}
               for h in outcome.history],
        metrics={
            "kind": "supernet", "supernet_acc": outcome.supernet_acc,
            "supernet_acc_on": "architecture half of the training split",
            "cell": cell_text(genome), "skips_per_epoch": [h["skips"] for h in outcome.history],
            "alpha_history": [h["alphas"] for h in outcome.history],
            "cell_per_epoch": [h["cell"] for h in outcome.history],
            "epoch_seconds": [round(h["seconds"], 2) for h in outcome.history],
            "stopped_early": outcome.stopped_early, "settings": settings.to_dict(),
            "operations": list(operations), "supernet_params": outcome.params,
            "search_seconds": outcome.seconds,
        },
    )


def settings_from(mapping: Mapping[str, Any]) -> SupernetSettings:
    """:class:`SupernetSettings` from a mapping; ConfigError naming an unknown key."""
    known = set(SupernetSettings.__dataclass_fields__)
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ConfigError(f"unknown supernet setting {unknown[0]!r}; known: "
                          f"{', '.join(sorted(known))}")
    return SupernetSettings(**dict(mapping))
