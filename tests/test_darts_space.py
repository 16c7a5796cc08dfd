"""The DARTS cell space: the published known answer, text forms, canonical key, validation,
exact parameter counts, any input size, decisions, and the search operators."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces import DARTS_V2, DartsGenome, DartsSpace, genome_key, get_space
from nasforge.spaces.darts_genome import CellEdge, DartsCell
from nasforge.spaces.darts_ops import AuxiliaryHead, FactorizedReduce, drop_path

PUBLISHED_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 17, 23), (4, 9, 12)]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def genomes(space: DartsSpace, count: int, seed: int = 0) -> list[DartsGenome]:
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(count)]


# ---------------------------------------------------------------- known answer
@pytest.mark.parametrize("auxiliary, expected", [(False, 3_349_342), (True, 3_825_768)])
def test_darts_v2_published_parameter_count(auxiliary: bool, expected: int) -> None:
    space = get_space("darts", cells=20, auxiliary=auxiliary)
    assert space.count_params(DARTS_V2, (3, 32, 32), 10, 36) == expected
    assert n_params(space.build(DARTS_V2, (3, 32, 32), 10, 36)) == expected


# ---------------------------------------------------------------- text forms
def test_published_genotype_text_parses_and_prints() -> None:
    genome = DartsGenome.from_genotype(PUBLISHED_TEXT)
    assert genome == DARTS_V2
    assert genome.to_genotype() == PUBLISHED_TEXT
    multiline = PUBLISHED_TEXT.replace("), (", "),\n    (").replace("[2, 3, 4, 5]", "range(2, 6)")
    assert DartsGenome.from_genotype(multiline) == DARTS_V2
    rng = random.Random(1)
    space = DartsSpace()
    for _ in range(20):
        g = space.sample(rng)
        assert DartsGenome.from_genotype(g.to_genotype()) == g


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('echo hi')", "must be Genotype("),
        ("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2, 3])", "not supported"),
        ("Genotype(normal=[], reduce=[], colour=1)", "unknown or repeated field"),
        ("Genotype(normal=[('a', 0)], reduce=x)", "literal list"),
        ("Genotype(normal=[('a', 0)], reduce=[], reduce_concat=range(len('ab')))", "int literals"),
        ("Genotype(normal=[(", "not valid syntax"),
        ("Genotype(normal=[('a', 0, 1)], reduce=[])", "(op, input) pair"),
    ],
)
def test_bad_genotype_text_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(GenomeError, match=re.escape(message)):
        DartsGenome.from_genotype(text)


def test_json_round_trip_and_refusals() -> None:
    space = DartsSpace()
    for g in genomes(space, 20) + [DARTS_V2]:
        data = json.loads(json.dumps(space.genome_to_dict(g)))
        back = space.genome_from_dict(data)
        assert back == g and hash(back) == hash(g)
    data = space.genome_to_dict(DARTS_V2)
    with pytest.raises(GenomeError, match="schema"):
        space.genome_from_dict({**data, "schema": "nasforge.darts/9"})
    with pytest.raises(GenomeError, match="unknown fields"):
        space.genome_from_dict({**data, "extra": 1})
    with pytest.raises(GenomeError, match="must be an int"):
        space.genome_from_dict({**data, "normal": [["sep_conv_3x3", "0"]] * 8})


# ---------------------------------------------------------------- canonical key
def swap_node(genome: DartsGenome, kind: str, node: int) -> DartsGenome:
    edges = list(genome.cell(kind).edges)
    i = 2 * (node - 2)
    edges[i], edges[i + 1] = edges[i + 1], edges[i]
    cells = {"normal": genome.normal, "reduce": genome.reduce, kind: DartsCell(tuple(edges))}
    return DartsGenome(cells["normal"], cells["reduce"])


def test_canonical_ignores_the_order_of_a_nodes_inputs() -> None:
    space = DartsSpace()
    for g in genomes(space, 10) + [DARTS_V2]:
        for kind in ("normal", "reduce"):
            for node in range(2, 6):
                swapped = swap_node(g, kind, node)
                assert swapped != g
                assert space.canonical(swapped) == space.canonical(g)
                assert genome_key(space, swapped) == genome_key(space, g)
                assert np.array_equal(space.encode(swapped), space.encode(g))
    other = space.mutate(DARTS_V2, random.Random(3))
    assert genome_key(space, other) != genome_key(space, DARTS_V2)


# ---------------------------------------------------------------- validation
def with_edge(kind: str, position: int, edge: CellEdge) -> DartsGenome:
    edges = list(DARTS_V2.cell(kind).edges)
    edges[position] = edge
    cells = {"normal": DARTS_V2.normal, "reduce": DARTS_V2.reduce, kind: DartsCell(tuple(edges))}
    return DartsGenome(cells["normal"], cells["reduce"])


@pytest.mark.parametrize(
    "genome, message",
    [
        (
            with_edge("normal", 1, CellEdge("sep_conv_3x3", 0)),
            "normal cell node 2: both inputs are node 0",
        ),
        (
            with_edge("reduce", 2, CellEdge("max_pool_3x3", 3)),
            "reduce cell node 3: input 3 is not an earlier node",
        ),
        (
            with_edge("normal", 7, CellEdge("sep_conv_3x3", -1)),
            "normal cell node 5: input -1 is not an earlier",
        ),
        (with_edge("normal", 0, CellEdge("conv_7x1_1x7", 0)), "unknown operation 'conv_7x1_1x7'"),
        (DartsGenome(DartsCell(DARTS_V2.normal.edges[:6]), DARTS_V2.reduce), "expected 8 edges"),
    ],
)
def test_validation_refuses_bad_genomes(genome: DartsGenome, message: str) -> None:
    space = DartsSpace(cells=3)
    reasons = space.validate(genome)
    assert len(reasons) == 1 and message in reasons[0]
    with pytest.raises(GenomeError, match="cannot build genome"):
        space.build(genome, (3, 32, 32), 10, 4)
    with pytest.raises(GenomeError):
        space.count_params(genome, (3, 32, 32), 10, 4)
    with pytest.raises(GenomeError):
        space.to_decisions(genome)


def test_operation_subset_and_shape_limits() -> None:
    space = DartsSpace(cells=3, operations=["sep_conv_3x3", "max_pool_3x3", "skip_connect"])
    assert "operation 'dil_conv_3x3' is not in this space" in space.validate(DARTS_V2)[0]
    for g in genomes(space, 20):
        assert {e.op for k in ("normal", "reduce") for e in g.cell(k).edges} <= set(
            space.operations
        )
    small = DartsSpace(cells=3, max_params=1000)
    assert "over max_params=1,000" in small.validate_for(DARTS_V2, (3, 32, 32), 10, 4)[0]
    assert "width must be >= 2" in DartsSpace(cells=3).validate_for(DARTS_V2, (3, 32, 32), 10, 1)[0]
    assert DartsSpace(cells=3).validate_for(DARTS_V2, (3, 32, 32), 10, 2) == []


def test_settings_round_trip_and_bad_settings() -> None:
    space = get_space("darts", cells=5, auxiliary=True, drop_path=0.2)
    again = get_space("darts", **json.loads(json.dumps(space.settings())))
    assert again.settings() == space.settings()
    for bad in (
        {"cells": 0},
        {"drop_path": 1.5},
        {"operations": ["conv"]},
        {"auxiliary": "yes"},
        {"colour": 1},
    ):
        with pytest.raises(ConfigError):
            get_space("darts", **bad)


# ---------------------------------------------------------------- exact counts, any input size
def test_count_params_equals_the_built_module_for_30_random_genomes() -> None:
    rng = random.Random(7)
    for i, g in enumerate(genomes(DartsSpace(), 30, seed=11)):
        space = DartsSpace(cells=rng.randint(1, 7), auxiliary=i % 2 == 0)
        shape = SHAPES[i % len(SHAPES)]
        width, classes = rng.randint(2, 9), rng.randint(2, 12)
        built = space.build(g, shape, classes, width)
        assert space.count_params(g, shape, classes, width) == n_params(built), (
            i,
            space.settings(),
        )
        with torch.no_grad():  # every cell count (1..7: reductions adjacent or at cell 0) runs
            assert built.eval()(torch.randn(1, *shape)).shape == (1, classes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("auxiliary", [False, True])
def test_forward_backward_on_any_input_size(shape: tuple[int, int, int], auxiliary: bool) -> None:
    torch.manual_seed(0)
    space = DartsSpace(cells=3, auxiliary=auxiliary, drop_path=0.2)
    for g in [DARTS_V2] + genomes(space, 2, seed=shape[1]):
        model = space.build(g, shape, 5, 4)
        x, y = torch.randn(2, *shape), torch.tensor([0, 4])
        model.train()
        out = model(x)
        if auxiliary:
            logits, aux = out
            assert aux.shape == (2, 5)
            loss = F.cross_entropy(logits, y) + model.auxiliary_weight * F.cross_entropy(aux, y)
        else:
            logits = out
            loss = F.cross_entropy(logits, y)
        assert logits.shape == (2, 5)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        model.eval()
        with torch.no_grad():
            assert model(x).shape == (2, 5)


def test_factorized_reduce_aligns_odd_sizes_and_matches_published_on_even() -> None:
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 6)
    assert fr(torch.randn(2, 4, 17, 23)).shape == (2, 6, 9, 12)
    assert FactorizedReduce(4, 5)(torch.randn(2, 4, 1, 1)).shape == (2, 5, 1, 1)
    x = torch.randn(2, 4, 16, 22)
    published = torch.cat([fr.conv_1(F.relu(x)), fr.conv_2(F.relu(x)[:, :, 1:, 1:])], dim=1)
    fr.eval()
    assert torch.allclose(fr(x), fr.bn(published))


def test_auxiliary_head_pooling_rule_and_drop_path() -> None:
    assert isinstance(AuxiliaryHead(8, 3, (8, 8)).features[1], torch.nn.AvgPool2d)
    assert isinstance(AuxiliaryHead(8, 3, (7, 8)).features[1], torch.nn.AdaptiveAvgPool2d)
    assert AuxiliaryHead(8, 3, (1, 2))(torch.randn(2, 8, 1, 2)).shape == (2, 3)
    torch.manual_seed(0)
    x = torch.ones(1000, 3)
    dropped = drop_path(x, 0.25)
    kept = (dropped[:, 0] > 0).float().mean().item()
    assert 0.7 < kept < 0.8 and torch.allclose(dropped[dropped > 0], torch.tensor(1 / 0.75))
    model = DartsSpace(cells=3, drop_path=0.2).build(DARTS_V2, (1, 8, 8), 3, 2)
    assert model.drop_path_prob == 0.2
    assert model.schedule_drop_path(5, 10) == pytest.approx(0.1)


# ---------------------------------------------------------------- decisions and operators
def test_decisions_round_trip_and_choices() -> None:
    space = DartsSpace()
    assert space.decision_length == 32 == len(space.decision_names())
    assert space.decision_names()[:4] == [
        "normal.node2.input_a",
        "normal.node2.op_a",
        "normal.node2.input_b",
        "normal.node2.op_b",
    ]
    assert space.decision_choices([]) == (0, 1)
    assert space.decision_choices([1, "none"]) == (0,)
    for g in genomes(space, 50, seed=5) + [DARTS_V2]:
        seq = space.to_decisions(g)
        for step, value in enumerate(seq):
            assert value in space.decision_choices(seq[:step])
        assert space.from_decisions(seq) == g
        assert space.to_decisions(space.from_decisions(seq)) == seq
    with pytest.raises(GenomeError, match=r"decision 2 \(normal.node2.input_b\) = 0"):
        space.decision_choices([0, "none", 0])
    with pytest.raises(GenomeError, match="32 steps"):
        space.from_decisions(space.to_decisions(DARTS_V2)[:-1])


def test_sample_mutate_crossover_encode() -> None:
    space = DartsSpace(cells=3)
    rng = random.Random(2)
    population = genomes(space, 40, seed=9)
    assert len({genome_key(space, g) for g in population}) == 40
    for g in population:
        assert space.validate(g) == []
        child = space.mutate(g, rng)
        assert space.validate(child) == []
        diff = [a != b for a, b in zip(space.to_decisions(g), space.to_decisions(child))]
        assert sum(diff) == 1
    for a, b in zip(population[::2], population[1::2]):
        child = space.crossover(a, b, rng)
        assert space.validate(child) == []
        for x, y, c in zip(space.to_decisions(a), space.to_decisions(b), space.to_decisions(child)):
            assert c in (x, y)
    vec = space.encode(DARTS_V2)
    assert vec.shape == (space.encoding_size(),) == (2 * 14 * 8,)
    assert vec.sum() == 16 and set(np.unique(vec)) == {0.0, 1.0}


def test_describe_and_dot() -> None:
    space = DartsSpace(cells=20)
    text = space.describe(DARTS_V2, 36, input_shape=(3, 32, 32))
    assert text.startswith("normal: 2=sep_conv_3x3(0)+sep_conv_3x3(1) ")
    assert "| reduce: 2=max_pool_3x3(0)+max_pool_3x3(1)" in text and text.endswith(
        "20 cells, C=36, 32x32 -> 8x8"
    )
    assert "\n" not in text
    dot = space.to_dot(DARTS_V2)
    assert dot.startswith("digraph darts {") and "cluster_normal" in dot and "cluster_reduce" in dot
    assert dot.count('[label="dil_conv_3x3"]') == 1 and dot.count('-> "nout"') == 4


def test_the_trainer_learns_the_auxiliary_head_and_ramps_drop_path() -> None:
    """train() adds the auxiliary loss of a (logits, aux_logits) output and sets the
    published drop-path ramp each epoch (0, then max/2 for 2 epochs)."""
    from nasforge.data import split_validation, synthetic_dataset
    from nasforge.evaluation import Budget, set_determinism, train
    from nasforge.evaluation.trainer import training_loss

    splits = split_validation(synthetic_dataset(n_train=64, n_test=16, num_classes=3,
                                                shape=(1, 12, 12)), 0.25, seed=0)
    space = get_space("darts", cells=3, auxiliary=True, drop_path=0.2)
    set_determinism(0)
    model = space.build(DARTS_V2, splits.input_shape, 3, 4)
    seen: list[float] = []
    original = model.forward

    def forward(x):
        if model.training:
            seen.append(model.drop_path_prob)
        return original(x)

    model.forward = forward  # type: ignore[method-assign]
    result = train(model, splits, Budget(epochs=2, batch_size=16, width=4))
    assert result.ok
    assert sorted(set(seen)) == [0.0, pytest.approx(0.1)]
    model.train()
    x, y = torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 0])
    logits, aux = original(x)
    expected = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    assert torch.allclose(training_loss(model, (logits, aux), y), expected)
