"""One-shot search (nasforge.oneshot): planted signal, the finite-difference Hessian-vector
product, discretisation to valid genomes, and a diverging supernet as a failed trial."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasforge.oneshot import (
    SupernetSettings,
    build_supernet,
    count_skips,
    discretise,
    finite_difference_hvp,
    fit_supernet,
)
from nasforge.oneshot.supernet import MixedOp, Supernet, without_affine
from nasforge.spaces import get_space
from nasforge.spaces.nb201_ops import OPERATIONS, make_operation


class OneEdgeSupernet(Supernet):
    """Input -> one mixed NB201 edge -> ReLU -> global average pooling -> linear."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.operations = OPERATIONS
        mods = [without_affine(make_operation(op, channels) or nn.Identity()) for op in OPERATIONS]
        self.edge = MixedOp(mods, [op == "none" for op in OPERATIONS])
        self.head = nn.Linear(channels, classes)
        self.alpha_cell = nn.Parameter(1e-3 * torch.randn(1, len(OPERATIONS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, index = self._weights(self.alpha_cell)
        h = self.edge(x, weights[0], None if index is None else index[0])
        return self.head(F.relu(h).mean(dim=(2, 3)))


def planted_task(n: int = 1024, channels: int = 4, size: int = 8) -> tuple[torch.Tensor, ...]:
    """Images in [0, 1]; the label is the channel of largest (standardised over the set) mean
    of ReLU(a fixed random 3x3 convolution of the image). Each kernel slice has zero spatial
    mean, so the mean of its output carries nothing a per-channel average (skip, pooling)
    could read: only a 3x3 convolution sees the signal. Classes come out balanced."""
    gen = torch.Generator().manual_seed(1234)
    x = torch.rand(n, channels, size, size, generator=gen)
    kernel = torch.randn(channels, channels, 3, 3, generator=gen)
    kernel = kernel - kernel.mean(dim=(2, 3), keepdim=True)
    signal = F.relu(F.conv2d(x, kernel, padding=1)).mean(dim=(2, 3))
    return x, ((signal - signal.mean(0)) / signal.std(0)).argmax(dim=1)


@pytest.mark.timeout(120)
def test_planted_3x3_signal_ranks_nor_conv_3x3_first_in_most_seeds() -> None:
    # first-order DARTS; 15 epochs of 16 steps: learning rates raised from the published
    # (0.025, 3e-4) for so short a run. Measured: nor_conv_3x3 first in 14 of seeds 0-14.
    x, y = planted_task()
    settings = SupernetSettings(cells=1, a_lr=6e-3, w_lr=0.1)
    firsts = []
    for seed in range(5):
        torch.manual_seed(seed)
        model = OneEdgeSupernet(x.shape[1], int(y.max()) + 1)
        fit_supernet(model, x, y, epochs=15, batch_size=32, settings=settings, seed=seed)
        firsts.append(OPERATIONS[int(model.alpha_cell.detach()[0].argmax())])
    assert firsts.count("nor_conv_3x3") >= 4, firsts


def test_finite_difference_hvp_matches_exact_double_backward() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    w1, w2 = torch.randn(5, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    alpha = torch.randn(2, requires_grad=True)

    def loss() -> torch.Tensor:
        mix = torch.softmax(alpha, 0)
        return F.cross_entropy(mix[0] * torch.tanh(x @ w1) + mix[1] * (x @ w2) ** 2, y)

    v = [torch.randn(5, 3), torch.randn(5, 3)]
    grads = torch.autograd.grad(loss(), [w1, w2], create_graph=True)
    exact = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v)), [alpha])[0]
    approx = finite_difference_hvp(loss, [w1, w2], [alpha], v, eps=0.01)[0]
    rel = float((approx - exact).norm() / exact.norm())
    assert rel < 1e-2, (rel, approx, exact)
    assert torch.equal(w1, w1.detach())  # weights restored (same object, same values)


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
@pytest.mark.parametrize("method", ["softmax", "gumbel"])
def test_discretisation_gives_a_valid_genome_of_each_space(space_name, method) -> None:
    space = get_space(space_name)
    torch.manual_seed(1)
    net = build_supernet(space_name, (1, 10, 10), 3, 4, 1 if space_name == "nb201" else 3,
                         method=method)
    out = net(torch.randn(4, 1, 10, 10))
    assert out.shape == (4, 3)
    out.sum().backward()
    assert all(a.grad is not None for a in net.arch_parameters())
    for k in range(5):
        alphas = {name: torch.randn_like(a) * 3 for name, a in net.alphas().items()}
        genome = discretise(space_name, alphas, net.operations)
        assert space.validate(genome) == []
        space.build(genome, (1, 10, 10), 3, 4)  # an ordinary network of the space
        assert 0 <= count_skips(genome) <= 8


def test_nb201_discretisation_takes_argmax_with_none_unless_excluded() -> None:
    alpha = torch.zeros(6, 5)
    alpha[:, 0] = 2.0  # none strongest everywhere
    alpha[:, 3] = 1.0  # then nor_conv_3x3
    assert discretise("nb201", {"cell": alpha}, OPERATIONS).ops == ("none",) * 6
    assert discretise("nb201", {"cell": alpha}, OPERATIONS, exclude_none=True).ops == (
        ("nor_conv_3x3",) * 6)


def test_darts_discretisation_keeps_the_two_strongest_inputs_per_node() -> None:
    from nasforge.spaces.darts_ops import OPERATIONS as DARTS_OPS

    alpha = torch.zeros(14, len(DARTS_OPS))
    alpha[:, 0] = 5.0  # none strongest on every edge: ignored for edges and ops
    alpha[3, DARTS_OPS.index("sep_conv_5x5")] = 3.0  # edge 3: node 3 <- input 1
    genome = discretise("darts", {"normal": alpha, "reduce": alpha}, DARTS_OPS)
    assert all(e.op != "none" for e in genome.normal.edges)
    # edges 2..4 belong to node 3 (inputs 0, 1, 2): input 1 wins with sep_conv_5x5
    assert genome.normal.edges[2].op == "sep_conv_5x5" and genome.normal.edges[2].input == 1


def test_second_order_and_gdas_steps_run_and_move_the_alphas() -> None:
    x, y = planted_task(n=64)
    for settings in (SupernetSettings(order=2), SupernetSettings(method="gumbel")):
        torch.manual_seed(0)
        model = OneEdgeSupernet(x.shape[1], int(y.max()) + 1)
        before = model.alpha_cell.detach().clone()
        fit_supernet(model, x, y, epochs=1, batch_size=16, settings=settings, seed=0)
        assert not torch.equal(before, model.alpha_cell.detach())


@pytest.mark.timeout(120)
def test_a_diverging_supernet_is_a_failed_trial_and_the_search_ends_cleanly(tmp_path) -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from conftest import tiny_config_dict

    from nasforge.api import Search
    from nasforge.config import config_from_dict
    from nasforge.storage.sqlite import StudyStorage

    raw = tiny_config_dict(
        space={"name": "nb201", "settings": {"cells": 1}},
        strategy={"name": "darts", "settings": {"cells": 1, "max_steps": 2,
                                                "supernet": {"w_lr": 1e38, "grad_clip": 1e38}}},
        run={"max_evals": 1, "workers": 1, "keep_best": 1})
    search = Search(config_from_dict(raw, "t"), tmp_path / "nan.db")
    summary = search.run(ThreadPoolExecutor(1))  # isolated children, no pool start-up
    search.close()
    assert summary.failed == 1 and summary.ok == 0 and summary.stop_reason == "max_evals reached"
    with StudyStorage.open(tmp_path / "nan.db") as store:
        (trial,) = store.trials()
    assert trial.kind == "supernet" and trial.status == "failed"
    assert "non-finite" in trial.error and "SupernetDiverged" in trial.error


@pytest.mark.timeout(120)
def test_a_supernet_trial_stores_its_cell_history_and_hands_the_cell_on(tmp_path) -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from conftest import tiny_config_dict

    from nasforge.api import Search
    from nasforge.config import config_from_dict
    from nasforge.storage.sqlite import StudyStorage

    raw = tiny_config_dict(
        space={"name": "nb201", "settings": {"cells": 1}},
        strategy={"name": "gdas", "settings": {"cells": 1, "epochs": 2, "max_steps": 1,
                                               "supernet": {"eval_images": 64}}},
        run={"max_evals": 2, "workers": 1, "keep_best": 1})
    search = Search(config_from_dict(raw, "t"), tmp_path / "ok.db")
    summary = search.run(ThreadPoolExecutor(1))
    search.close()
    assert summary.ok == 2
    with StudyStorage.open(tmp_path / "ok.db") as store:
        first, second = store.trials()
    assert (first.kind, second.kind) == ("supernet", "train")
    assert first.genome == second.genome  # the found cell, trained as an ordinary network
    assert first.genome_key == second.genome_key  # its canonical key (final runs, exports)
    assert second.val_acc is not None and second.metrics.get("kind") != "supernet"
    m = first.metrics
    assert len(m["alpha_history"]) == 2 and len(m["skips_per_epoch"]) == 2
    assert len(m["alpha_history"][0]["cell"]) == 6
    assert all(abs(sum(row) - 1) < 1e-3 for row in m["alpha_history"][-1]["cell"])
    assert m["cell"] == get_space("nb201").genome_from_dict(first.genome).to_string()
    assert 0.0 <= first.val_acc <= 1.0


def test_a_darts_supernet_without_a_normal_cell_is_refused_in_one_line() -> None:
    """With 1 or 2 cells every DARTS cell is a reduction cell (reductions at L/3 and 2L/3): the
    normal cell's parameters would get no gradient (autograd raised deep in the search)."""
    from nasforge.errors import ConfigError
    from nasforge.evaluation.budget import Budget
    from nasforge.oneshot.supernet import DartsSupernet
    from nasforge.spaces import get_space
    from nasforge.strategies import get_strategy
    from nasforge.strategies.base import Problem

    with pytest.raises(ConfigError, match="at least 3 cells"):
        DartsSupernet(1, 10, channels=4, cells=2)
    space = get_space("darts", cells=2)
    with pytest.raises(ConfigError, match="at least 3 cells"):
        get_strategy("darts", space, Budget(), Problem((1, 8, 8), 10), 0)
    assert DartsSupernet(1, 10, channels=4, cells=3).alpha_normal.shape[0] == 14
