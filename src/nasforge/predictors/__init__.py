"""Performance predictors over encoded networks (BANANAS' MLP ensemble, a random forest, a
Gaussian process), the encodings per space, and their scoring on stored studies."""

from nasforge.predictors.encoders import Encoder, encode_all, encoder_for
from nasforge.predictors.models import (
    GaussianProcess,
    MLPEnsemble,
    Predictor,
    RandomForest,
    available_predictors,
    make_predictor,
)

__all__ = [
    "Encoder",
    "GaussianProcess",
    "MLPEnsemble",
    "Predictor",
    "RandomForest",
    "available_predictors",
    "encode_all",
    "encoder_for",
    "make_predictor",
]
