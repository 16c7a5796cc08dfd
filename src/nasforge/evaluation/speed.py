"""Speed options (numeric precision, memory format, intra-op threads) chosen by measurement.

Why measure: no setting is fastest everywhere. On a 2-core AMD EPYC with ``avx512_bf16`` bf16
autocast with channels-last trained wide networks about 2x faster than fp32; on an AVX2-only
machine the same autocast made the quick preset's 137k-parameter network 10x *slower* (556 ms a
step against 60 ms for fp32 channels-last: convolutions fell to PyTorch's slow reference path).
Channels-last is not always faster either (a 3x3 convolution at 8 channels 6x faster, at 32
channels slightly slower). So a budget may say ``auto`` for ``precision``, ``channels_last``
and ``threads``, and before training the candidates are timed on the real network, batch size
and device, and the fastest is kept.

Candidates: on CPU fp32 and, only where the processor has native bf16 instructions
(``avx512_bf16`` or ``amx_bf16`` on x86-64, ``bf16`` on ARM), bf16 autocast; on CUDA fp32, TF32,
bf16 (where ``torch.cuda.is_bf16_supported()``) and fp16 autocast with a gradient scaler. Each
precision is tried contiguous and channels-last (where ``channels_last`` is ``auto``), then the
fastest setting with fewer threads (CPU, where ``threads`` is ``auto``). An explicit setting is
obeyed: it simply leaves one candidate on its axis.

The bound on cost: measuring runs throw-away steps on a copy of the model (the real training is
untouched, so a run with a stored choice follows the same trajectory as the run that measured
it). It may spend at most ``fraction`` (5%) of the training's own estimated time, where the
estimate is the first candidate's step time times the training's steps; a training too short to
afford two candidates (fewer than ``2 * steps_per_candidate / fraction`` steps, 80 by default) is
not measured and uses the first candidate (fp32, contiguous, all threads); nor is one whose 5%
comes to less than a second (after timing two baseline steps). A candidate whose
warm-up step is already ``abandon`` (3x) slower than the best so far is dropped after that step.

The choice is made once per (network, width, batch size, device, threads) and stored in the
study (see ``speed_key``), so a rerun or ``--resume`` reuses it without measuring.

Short trainings in a study: most search trials are too short to afford their own measuring,
yet they are most of a search's time (the quick preset's 3-epoch trials at width 16 ran in fp32
contiguous, while channels-last or bf16 took 15-50% less a step on the same networks). So the
first such trial of a study (per width, batch size and device) is measured anyway, within
``SHORT_ALLOWANCE_SECONDS`` (a one-off cost per study), and its choice becomes the study's
default for its short trainings (stored under the network key ``DEFAULT_NETWORK``; source
``study default``). A stored default whose setting is not a candidate on this machine (bf16
where the CPU has no native bf16) is ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from nasforge.errors import ConfigError

__all__ = [
    "DEFAULT_NETWORK",
    "SHORT_ALLOWANCE_SECONDS",
    "SpeedChoice",
    "SpeedSetting",
    "candidate_settings",
    "choose",
    "cpu_flags",
    "device_key",
    "has_native_bf16",
    "measure_training_step",
    "speed_key",
]

AUTO = "auto"
CPU_PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
CUDA_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
MEASURE_FRACTION = 0.05
#: The measuring allowance (seconds) of the trial that sets a study's default for short trainings.
SHORT_ALLOWANCE_SECONDS = 2.0
#: The network part of ``speed_key`` under which a study's default for short trainings is kept.
DEFAULT_NETWORK = "*"
STEPS_PER_CANDIDATE = 2  # one warm-up step and at least one timed step


@dataclass(frozen=True)
class SpeedSetting:
    """One candidate: ``precision`` (fp32 | bf16 | fp16 | tf32), ``channels_last`` memory
    format, and ``threads`` (intra-op CPU threads; None leaves the process's count)."""

    precision: str = "fp32"
    channels_last: bool = False
    threads: int | None = None

    def label(self) -> str:
        """A short readable form, e.g. ``bf16, channels-last, 2 threads``."""
        parts = [self.precision, "channels-last" if self.channels_last else "contiguous"]
        if self.threads is not None:
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        return ", ".join(parts)


@dataclass
class SpeedChoice:
    """What the chooser decided.

    ``setting`` is what training uses; ``step_seconds`` the mean measured time of one training
    step in that setting (None when not measured); ``measured`` whether timing happened (False
    for explicit settings, stored choices and trainings too short to afford it, with
    ``reason``); ``timings`` maps each tried candidate's label to its timed steps in seconds
    (an abandoned candidate has only its warm-up); ``overhead_seconds`` is the wall time the
    measuring cost; ``source`` is ``measured``, ``stored``, ``explicit``, ``default`` or
    ``study default``; ``for_default`` marks a short training's measurement meant as its
    study's default for short trainings (see the module docstring).
    """

    setting: SpeedSetting
    step_seconds: float | None = None
    measured: bool = False
    source: str = "default"
    reason: str | None = None
    timings: dict[str, list[float]] = field(default_factory=dict)
    overhead_seconds: float = 0.0
    for_default: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the trial and in the study's choice cache)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SpeedChoice":
        """Inverse of ``to_dict``; raises ``ConfigError`` on a malformed record."""
        try:
            values = dict(data)
            values["setting"] = SpeedSetting(**values["setting"])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed stored speed choice: {exc}") from None

    @classmethod
    def parse_stored(cls, stored: Any) -> "SpeedChoice | None":
        """A stored record as a choice, or None when it is absent or damaged (the caller then
        measures again rather than failing a trial)."""
        if not isinstance(stored, dict):
            return None
        try:
            return cls.from_dict(stored)
        except ConfigError:
            return None


# ------------------------------------------------------------------ hardware
@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo``'s ``flags`` or ``Features``
    line); empty where the file is missing (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_native_bf16(device: str | torch.device = "cpu", flags: frozenset[str] | None = None) -> bool:
    """Whether ``device`` computes bf16 natively: on CUDA ``torch.cuda.is_bf16_supported()``;
    on an x86-64 CPU the ``avx512_bf16`` or ``amx_bf16`` flag, on ARM the ``bf16`` feature.
    Without it bf16 autocast falls back to slow reference kernels, so it is never a candidate.
    ``NASFORGE_BF16=0`` in the environment says no everywhere (to emulate such a machine)."""
    if os.environ.get("NASFORGE_BF16", "").strip() == "0":
        return False
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))


def device_key(device: str | torch.device, threads: int) -> str:
    """Names the hardware a choice was measured on: ``cpu/<model>/<n>t`` or
    ``cuda/<device name>``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda/{torch.cuda.get_device_name(dev)}"
    return f"cpu/{platform.machine()}/{threads}t"


def speed_key(network_key: str, width: int, batch_size: int) -> str:
    """The study-wide key under which choices are stored, one per device key (``device_key``):
    the network (its canonical key), its width and the batch size."""
    return f"{network_key}|w{width}|b{batch_size}"


# ---------------------------------------------------------------- candidates
def candidate_settings(
    device_type: str,
    precision: str,
    channels_last: bool | str,
    bf16_native: bool,
    threads: int | str | None,
    max_threads: int,
) -> tuple[list[SpeedSetting], list[int]]:
    """The precision x memory-format candidates, in the order they are tried (the first is the
    baseline), and the extra thread counts to try on the fastest of them afterwards.

    ``precision``/``channels_last``/``threads`` are the budget's values; ``auto`` opens an
    axis, anything else fixes it. Raises ``ConfigError`` for a precision the device lacks.
    """
    cuda = device_type == "cuda"
    known = CUDA_PRECISIONS if cuda else CPU_PRECISIONS + ("fp16",)
    if precision == AUTO:
        pool = list(CUDA_PRECISIONS if cuda else CPU_PRECISIONS)
        precisions = [p for p in pool if p != "bf16" or bf16_native]
    elif precision in known:
        precisions = [precision]
    else:
        raise ConfigError(f"precision {precision!r} is not available on {device_type}; "
                          f"known: auto, {', '.join(known)}")
    formats = [False, True] if channels_last == AUTO else [bool(channels_last)]
    if threads == AUTO:
        base_threads: int | None = max(1, max_threads)
        extra = []
        count = base_threads // 2
        while count >= 1 and not cuda and len(extra) < 2:
            extra.append(count)
            count //= 2
        if cuda:
            extra = []
    else:
        base_threads, extra = (None if threads is None else int(threads)), []
    settings = [SpeedSetting(p, f, base_threads) for p in precisions for f in formats]
    return settings, extra


# ------------------------------------------------------------------ chooser
def choose(
    settings: Sequence[SpeedSetting],
    extra_threads: Sequence[int],
    step: Callable[[SpeedSetting], float],
    total_steps: int,
    *,
    fraction: float = MEASURE_FRACTION,
    abandon: float = 3.0,
    max_timed: int = 5,
    min_seconds: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
    default: SpeedSetting | None = None,
    learn_default: bool = False,
) -> SpeedChoice:
    """Time the candidates with ``step`` and keep the fastest, within a measuring budget.

    ``step(setting)`` runs one throw-away training step in ``setting`` and returns its seconds
    (its first call for a setting is that setting's warm-up). ``total_steps`` is the number of
    steps the training will run; the measuring may cost at most ``fraction`` of
    ``total_steps`` times the baseline's step time (see the module docstring); when that
    allowance is below ``min_seconds`` (a training of under ~20 s), only the baseline is timed
    (2 steps) and kept: the first step of an untried kernel (bf16 JIT) alone can cost a second.
    With one candidate and no extra thread counts nothing is measured (``source="explicit"``).

    A training too short to measure takes ``default`` (the study's default for short
    trainings, ``source="study default"``) when it is one of ``settings``; without one, and
    with ``learn_default``, it is measured within ``SHORT_ALLOWANCE_SECONDS`` instead and the
    choice is marked ``for_default`` (the study keeps it as its default).
    """
    settings = list(settings)
    if not settings:
        raise ValueError("no speed candidates")
    if len(settings) == 1 and not extra_threads:
        return SpeedChoice(settings[0], source="explicit")
    known = {(s.precision, s.channels_last) for s in settings}
    if default is not None and (default.precision, default.channels_last) not in known:
        default = None  # e.g. bf16 stored on a machine with native bf16, run where it has none

    def too_short(reason: str, **fields: Any) -> SpeedChoice | None:
        if default is not None:
            return SpeedChoice(default, source="study default",
                               reason=f"{reason}: the study's default for short trainings")
        if learn_default:
            return None
        return SpeedChoice(settings[0], source="default", reason=reason, **fields)

    if total_steps * fraction < 2 * STEPS_PER_CANDIDATE:
        short = too_short(f"training too short to measure ({total_steps} steps)")
        if short is not None:
            return short
    started = clock()
    timings: dict[SpeedSetting, list[float]] = {}
    warm: dict[SpeedSetting, float] = {}

    def best_time() -> float:
        return min(min(v) for v in timings.values() if v)

    def try_one(setting: SpeedSetting, allowed: float) -> None:
        spent = clock() - started
        if timings and spent + 2 * best_time() > allowed:
            return
        warm[setting] = step(setting)
        if timings and warm[setting] > abandon * best_time():
            timings[setting] = []
            return
        timings[setting] = [step(setting)]

    baseline = settings[0]
    warm[baseline] = step(baseline)
    timings[baseline] = [step(baseline)]
    allowed = fraction * total_steps * timings[baseline][0]
    for_default = False
    if allowed < min_seconds:  # a first step of a new kernel alone can cost ~1 s
        short = too_short(
            f"training too short to measure (about {total_steps * timings[baseline][0]:.0f}s)",
            step_seconds=timings[baseline][0], timings={baseline.label(): timings[baseline]},
            overhead_seconds=clock() - started)
        if short is not None:
            return short
        allowed, for_default = SHORT_ALLOWANCE_SECONDS, True
    for setting in settings[1:]:
        try_one(setting, allowed)
    for count in extra_threads:
        winner = min((s for s in timings if timings[s]), key=lambda s: min(timings[s]))
        try_one(dataclasses.replace(winner, threads=count), allowed)
    # more timed steps for the close contenders while the budget lasts (noise on shared CPUs)
    for _ in range(max_timed - 1):
        best = best_time()
        for setting in [s for s in timings if timings[s] and min(timings[s]) <= 1.3 * best]:
            if clock() - started + best > allowed:
                break
            timings[setting].append(step(setting))
    winner = min((s for s in timings if timings[s]), key=lambda s: min(timings[s]))
    return SpeedChoice(
        setting=winner,
        step_seconds=statistics.fmean(timings[winner]),
        measured=True,
        source="measured",
        timings={s.label(): v for s, v in timings.items()},
        overhead_seconds=clock() - started,
        reason="measured as the study's default for short trainings" if for_default else None,
        for_default=for_default,
    )


# -------------------------------------------------------------- applying one
@contextmanager
def applied(setting: SpeedSetting, device: torch.device) -> Iterator[None]:
    """Run a block under ``setting``'s thread count and TF32 switches, restoring both after."""
    threads_before = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if setting.threads is not None and device.type == "cpu":
            torch.set_num_threads(max(1, int(setting.threads)))
        if device.type == "cuda":
            on = setting.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = on
            torch.backends.cudnn.allow_tf32 = on
        yield
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training_step(
    model: nn.Module,
    batch_x: torch.Tensor,
    batch_y: torch.Tensor,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    device: torch.device,
) -> Callable[[SpeedSetting], float]:
    """A ``step`` function for ``choose``: one forward, backward and optimizer step of a copy
    of ``model`` (one copy per setting, so the real model and its optimizer are untouched) on
    the given normalised batch ``batch_x`` [N, C, H, W] (float32) and labels ``batch_y`` [N],
    timed in seconds (device-synchronised)."""
    from nasforge.evaluation.metrics import autocast_context, grad_scaler
    from nasforge.evaluation.trainer import optimizer_step, training_loss

    copies: dict[SpeedSetting, tuple[nn.Module, torch.optim.Optimizer, Any]] = {}

    def step(setting: SpeedSetting) -> float:
        with applied(setting, device):
            if setting not in copies:
                clone = copy.deepcopy(model).to(device)
                if setting.channels_last:
                    clone.to(memory_format=torch.channels_last)
                clone.train()
                copies[setting] = (clone, make_optimizer(clone), grad_scaler(device, setting.precision))
            clone, optimizer, scaler = copies[setting]
            xb = batch_x.to(device)
            if setting.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = batch_y.to(device)
            _sync(device)
            begin = time.perf_counter()
            with autocast_context(device, setting.precision):
                output = clone(xb)
            optimizer_step(training_loss(clone, output, yb), optimizer, scaler)
            _sync(device)
            return time.perf_counter() - begin

    return step
