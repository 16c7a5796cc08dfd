"""The study's stored speed choices, as the runner sends them to evaluations and keeps what
they measured (``nasforge.evaluation.speed``: a choice per network, width, batch size and
device key, and the study's default for trainings too short to measure their own)."""

from __future__ import annotations

from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.evaluation.speed import DEFAULT_NETWORK, SpeedChoice, speed_key
from nasforge.execution.results import EvalResult
from nasforge.execution.tasks import STUDY_DEFAULT
from nasforge.storage.sqlite import StudyStorage

__all__ = ["speed_choices_for", "store_speed"]


def speed_choices_for(storage: StudyStorage, gkey: str, budget: Budget) -> dict[str, Any] | None:
    """The study's stored speed choices for network ``gkey`` under ``budget`` (``auto``
    budgets only; None otherwise), by device key, so a rerun or ``--resume`` trains under the
    same options without measuring again; and, under ``STUDY_DEFAULT``, the study's defaults
    for short trainings (empty: the first short training measures one)."""
    if not budget.speed_auto:
        return None
    choices = storage.speed_choices(speed_key(gkey, budget.width, budget.batch_size))
    choices[STUDY_DEFAULT] = storage.speed_choices(
        speed_key(DEFAULT_NETWORK, budget.width, budget.batch_size))
    return choices


def store_speed(storage: StudyStorage, gkey: str, budget: Budget, result: EvalResult) -> None:
    """Keep a choice the evaluation measured; one measured to be the study's default for short
    trainings is kept as that too, unless a readable one is stored already (the first stays;
    a damaged one is replaced)."""
    speed = result.speed
    if not (budget.speed_auto and speed and speed.get("measured") and result.speed_device):
        return
    storage.put_speed_choice(speed_key(gkey, budget.width, budget.batch_size),
                             result.speed_device, speed)
    if speed.get("for_default"):
        key = speed_key(DEFAULT_NETWORK, budget.width, budget.batch_size)
        stored = storage.speed_choices(key).get(result.speed_device)
        if SpeedChoice.parse_stored(stored) is None:
            storage.put_speed_choice(key, result.speed_device, speed)

