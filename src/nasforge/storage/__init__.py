"""Study storage: one SQLite file per study (``StudyStorage``) holding its trials (``Trial``)."""

from nasforge.storage.files import artifacts_dir, resolve_checkpoint
from nasforge.storage.records import FinalRunRecord, Trial, TrialRecord, TrialStatus
from nasforge.storage.schema import budget_key
from nasforge.storage.sqlite import StudyStorage

__all__ = ["FinalRunRecord", "StudyStorage", "Trial", "TrialRecord", "TrialStatus",
           "artifacts_dir", "budget_key", "resolve_checkpoint"]
