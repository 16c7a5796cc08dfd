"""The training budget (fidelity) under which a network is evaluated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from nasforge.errors import ConfigError

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw", "adamax", "rmsprop")
SCHEDULES: tuple[str, ...] = ("none", "cosine")
AUGMENTATIONS: tuple[str, ...] = ("none", "flip", "flip+erase", "cutout", "flip+cutout")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "tf32")
"""``auto`` is chosen by measurement (``nasforge.evaluation.speed``); ``tf32`` and ``fp16``
exist on CUDA only (fp16 with a gradient scaler)."""
AUTO = "auto"
TTA_MODES: tuple[str, ...] = ("none", "flip")
"""Values of ``Budget.tta`` (``nasforge.evaluation.tta``; None means ``none``)."""

DEFAULT_LR: dict[str, float] = {
    "sgd": 0.05,
    "adam": 1e-3,
    "adamw": 1e-3,
    "adamax": 2e-3,
    "rmsprop": 1e-3,
}


@dataclass(frozen=True)
class Budget:
    """How much and how a network is trained: plain, hashable data.

    ``width`` is a channel count (the base C of builders that take one), never a multiplier.
    ``data_fraction`` is the stratified fraction of the training split used for training.
    ``lr=None`` means the optimizer's default in ``DEFAULT_LR``. ``max_steps`` caps optimizer
    steps per epoch (tests and smoke runs); ``patience`` stops after that many epochs without
    a better validation accuracy.

    Speed options: ``precision`` (``auto`` | fp32 | bf16 | fp16 | tf32), ``channels_last``
    (``"auto"``, true or false) and ``threads`` (intra-op CPU threads: an int, ``"auto"``, or
    None for the worker's share of the cores). ``auto`` is resolved by timing the candidates on
    the real network before training (``nasforge.evaluation.speed``); explicit values are obeyed.
    """

    epochs: int = 1
    data_fraction: float = 1.0
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "none"
    augment: str = "none"
    precision: str = "fp32"
    channels_last: bool | str = False
    width: int = 16
    patience: int | None = None
    max_steps: int | None = None
    seed: int = 0
    threads: int | str | None = None
    #: epochs the learning-rate schedule spans (None: ``epochs``); a multi-fidelity study sets
    #: its largest budget here so a continued trial follows the schedule of a full one
    schedule_epochs: int | None = None
    #: when to validate: None (after every epoch), an int k (after every k-th epoch and the
    #: last) or ``"last"`` (after the last epoch only). Validation does not change training (no
    #: random draw), so a trial's weights and its last validation accuracy are the same either
    #: way; skipping it saves the passes over the validation split that nothing reads (a search
    #: that ranks by the last epoch, a final step that reports the test accuracy at the end)
    validate_every: int | str | None = None
    #: label smoothing epsilon of the training loss (Szegedy et al. 2016, "Rethinking the
    #: Inception Architecture", section 7): targets (1 - eps) on the label plus eps spread
    #: evenly over all classes; None (or 0) trains on the hard labels. The curve's training
    #: loss is the smoothed one; validation and test losses use the hard labels
    label_smoothing: float | None = None
    #: test-time augmentation of validation and test accuracy (``nasforge.evaluation.tta``):
    #: None or ``"none"`` (one view), ``"flip"`` (probabilities averaged over the image and its
    #: mirror; a second forward pass, no change to training)
    tta: str | None = None

    def __post_init__(self) -> None:
        # spellings that mean "off" become None, so they keep old studies' budget keys
        if self.tta == "none":
            object.__setattr__(self, "tta", None)
        smoothing = self.label_smoothing
        if isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool):
            object.__setattr__(self, "label_smoothing", float(smoothing) or None)
        self.check()

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first invalid field."""
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ConfigError(f"budget.epochs must be a positive integer, got {self.epochs!r}")
        if not (0.0 < float(self.data_fraction) <= 1.0):
            raise ConfigError(f"budget.data_fraction must be in (0, 1], got {self.data_fraction!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"budget.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size < 2:  # train-mode batch norm on a 1x1 map needs two values
            raise ConfigError("budget.batch_size must be at least 2: batch norm cannot train on "
                              "a batch of one image")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}"
            )
        if self.lr is not None and not float(self.lr) > 0:
            raise ConfigError(f"budget.lr must be positive, got {self.lr!r}")
        if float(self.weight_decay) < 0:
            raise ConfigError(f"budget.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(
                f"unknown augmentation {self.augment!r}; known: {', '.join(AUGMENTATIONS)}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}"
            )
        if not (isinstance(self.channels_last, bool) or self.channels_last == AUTO):
            raise ConfigError(
                f"budget.channels_last must be true, false or auto, got {self.channels_last!r}")
        if self.threads is not None and self.threads != AUTO and (
                not isinstance(self.threads, int) or isinstance(self.threads, bool)
                or self.threads < 1):
            raise ConfigError(
                f"budget.threads must be a positive integer, auto or null, got {self.threads!r}")
        if self.schedule_epochs is not None and (
                not isinstance(self.schedule_epochs, int) or self.schedule_epochs < self.epochs):
            raise ConfigError(f"budget.schedule_epochs must be an integer >= epochs "
                              f"({self.epochs}), got {self.schedule_epochs!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ConfigError(f"budget.width must be a positive integer, got {self.width!r}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"budget.patience must be >= 1, got {self.patience!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"budget.max_steps must be >= 1, got {self.max_steps!r}")
        smoothing = self.label_smoothing
        if smoothing is not None and (isinstance(smoothing, bool)
                                      or not isinstance(smoothing, (int, float))
                                      or not 0.0 <= float(smoothing) < 1.0):
            raise ConfigError(f"budget.label_smoothing must be in [0, 1), got {smoothing!r}")
        if self.tta is not None and self.tta not in TTA_MODES:
            raise ConfigError(f"unknown test-time augmentation budget.tta {self.tta!r}; "
                              f"known: {', '.join(TTA_MODES)}")
        every = self.validate_every
        if every is not None and every != "last" and (
                not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ConfigError(f"budget.validate_every must be a positive integer, \"last\" or "
                              f"null, got {every!r}")
        if self.patience is not None and every not in (None, 1):
            raise ConfigError("budget.patience counts epochs without a better validation "
                              "accuracy: it needs validate_every 1 (or unset), got "
                              f"{every!r}")

    def validates_after(self, epoch: int) -> bool:
        """Whether training validates after ``epoch`` (1-based; see ``validate_every``)."""
        every = self.validate_every
        if every is None or epoch >= self.epochs:
            return True
        return every != "last" and epoch % int(every) == 0

    @property
    def learning_rate(self) -> float:
        """The learning rate in effect (explicit or the optimizer's default)."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.optimizer]

    def replace(self, **changes: Any) -> "Budget":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def speed_auto(self) -> bool:
        """Whether any speed option is ``auto`` (to be chosen by measurement)."""
        return AUTO in (self.precision, self.channels_last, self.threads)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form. ``threads``, ``schedule_epochs``, ``validate_every``,
        ``label_smoothing`` and ``tta`` are left out while None, so
        budgets written before they existed keep their stored keys (``budget_key``) and studies
        resume unchanged."""
        data = dataclasses.asdict(self)
        for late in ("threads", "schedule_epochs", "validate_every", "label_smoothing", "tta"):  # added after studies were stored
            if data[late] is None:
                del data[late]
        return data

    @property
    def schedule_span(self) -> int:
        """Epochs the learning-rate schedule spans."""
        return self.schedule_epochs if self.schedule_epochs is not None else self.epochs

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Budget":
        """Build from a mapping; unknown keys are a ``ConfigError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown budget key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))
