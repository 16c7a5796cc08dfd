"""Study storage."""

from nasforge.storage.sqlite import (
    FinalRunRecord,
    StudyStorage,
    TrialRecord,
    artifacts_dir,
    budget_key,
    resolve_checkpoint,
)

__all__ = ["FinalRunRecord", "StudyStorage", "TrialRecord", "artifacts_dir", "budget_key",
           "resolve_checkpoint"]
