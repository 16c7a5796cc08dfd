"""Performance predictors (``nasforge.predictors``), their encodings and ``study predictors``."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from nasforge.cli import main
from nasforge.errors import ConfigError
from nasforge.predictors import available_predictors, encode_all, encoder_for, make_predictor
from nasforge.predictors.encoders import DartsPathEncoder, GlobalFeatures
from nasforge.predictors.scoring import load_study_data, score_predictors
from nasforge.spaces import DARTS_V2, get_space
from nasforge.spaces.nb201 import _ROUTES, all_genomes

FULL_DB = Path(__file__).resolve().parents[1] / "experiments" / "reduced_training" / "full.db"
QUALITY = {"none": 0.0, "skip_connect": 0.3, "avg_pool_3x3": 0.2, "nor_conv_1x1": 0.6,
           "nor_conv_3x3": 1.0}


def route_quality(genome) -> float:
    """A synthetic objective with a known order: over the cell's input -> output routes
    without a ``none`` edge, the sum of the operations' qualities along each route."""
    live = [r for r in _ROUTES if all(genome.ops[k] != "none" for k in r)]
    return float(sum(sum(QUALITY[genome.ops[k]] for k in r) for r in live))


@pytest.fixture(scope="module")
def synthetic():
    space = get_space("nb201")
    cells = random.Random(0).sample(all_genomes(), 600)
    x = encode_all(encoder_for(space), cells)
    y = np.array([route_quality(g) for g in cells])
    return x, y


@pytest.mark.parametrize("name", available_predictors())
def test_each_predictor_ranks_500_held_out_cells_after_100(name, synthetic) -> None:
    x, y = synthetic
    model = make_predictor(name, seed=0).fit(x[:100], y[:100])
    mean, std = model.predict(x[100:])
    assert mean.shape == std.shape == (500,)
    assert np.all(std >= 0) and std.mean() > 0  # an uncertainty, not a constant 0
    tau = kendalltau(y[100:], mean, variant="b").statistic
    assert tau >= 0.8, f"{name}: tau-b {tau:.3f}"


def test_the_mlp_ensemble_is_deterministic_with_its_seed(synthetic) -> None:
    x, y = synthetic
    a = make_predictor("mlp_ensemble", seed=4, epochs=5).fit(x[:40], y[:40]).predict(x[40:60])
    b = make_predictor("mlp_ensemble", seed=4, epochs=5).fit(x[:40], y[:40]).predict(x[40:60])
    c = make_predictor("mlp_ensemble", seed=5, epochs=5).fit(x[:40], y[:40]).predict(x[40:60])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_predictors_refuse_bad_input_in_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown predictor|known"):
        make_predictor("xgboost")
    with pytest.raises(ConfigError, match="at least 2 finite targets"):
        make_predictor("gp").fit(np.zeros((1, 3)), np.zeros(1))
    with pytest.raises(ConfigError, match="before fit"):
        make_predictor("random_forest").predict(np.zeros((2, 3)))


def test_encodings_have_a_fixed_length_per_space() -> None:
    nb201 = get_space("nb201")
    cells = random.Random(1).sample(all_genomes(), 5)
    assert encode_all(encoder_for(nb201), cells).shape == (5, 84 + 30 + 6)
    darts = get_space("darts")
    enc = encoder_for(darts)
    assert isinstance(enc, DartsPathEncoder) and enc.size == 2 * 2 * (7 + 49 + 343)
    v = enc(DARTS_V2)
    # by hand: normal cell, from c_{k-2}: sep3, skip, sep3-dil3; from c_{k-1}: sep3, sep3-dil3;
    # reduction cell, from each input: max_pool, max_pool-skip (bits mark distinct sequences)
    assert v.shape == (enc.size,) and v.sum() == 9
    glob = get_space("global", max_nodes=8)
    feats = encoder_for(glob, (1, 28, 28), 10, 16)
    assert isinstance(feats, GlobalFeatures) and len(feats.names()) == feats.size
    rng = random.Random(2)
    genome = glob.sample(rng)
    row = feats(genome)
    assert row.shape == (feats.size,)
    assert np.array_equal(row, feats(glob.canonical(genome)))  # canonical: same network
    assert row[-1] == pytest.approx(np.log10(glob.count_params(genome, (1, 28, 28), 10, 16)))


def test_full_db_target_is_the_mean_of_the_reference_seeds() -> None:
    data = load_study_data(FULL_DB)
    assert len(data.genomes) == 30 and "2 seeds" in data.note
    assert np.all((data.target > 0.1) & (data.target < 1)) and np.all(data.params > 0)
    scores = score_predictors(data, ["gp", "random_forest"], [10, 20], repeats=2)
    by = {(s.predictor, s.size): s for s in scores}
    assert set(by) == {(p, n) for p in ("params", "gp", "random_forest") for n in (10, 20)}
    assert by[("gp", 20)].n_test == 10 and len(by[("gp", 20)].tau) == 2
    assert all(-1 <= t <= 1 for s in scores for t in s.tau)


def test_study_predictors_command(capsys, tmp_path) -> None:
    assert main(["study", "predictors", str(FULL_DB), "--predictors", "random_forest",
                 "--sizes", "10,20", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "Kendall tau-b" in out and "Spearman rho" in out
    assert "params" in out and "random_forest" in out and "n=10 (20)" in out
    assert main(["study", "predictors", str(tmp_path / "none.db")]) != 0
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["study", "predictors", str(FULL_DB), "--sizes", "29"]) != 0
    assert "training sizes must be" in capsys.readouterr().err


def test_default_sizes_fit_every_small_study() -> None:
    """The sizes `nasforge study predictors` picks by default are ones it accepts (each trains
    on 2..N-3 networks); a 9-network study once got [3, 4, 6, 8] and was refused."""
    from nasforge.predictors.scoring import default_sizes

    for n in range(5, 120):
        sizes = default_sizes(n)
        assert sizes, n
        assert all(2 <= s <= n - 3 for s in sizes), (n, sizes)
    assert default_sizes(9) == [3, 4, 6]
    assert default_sizes(4) == []
