"""The nb201 space: NAS-Bench-201's cell space, its keys, text form, network and capabilities."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nasforge.errors import ConfigError, GenomeError
from nasforge.evaluation.metrics import count_flops
from nasforge.spaces import genome_key, get_space
from nasforge.spaces.nb201 import (
    NB201Genome, all_genomes, count_unique, nb201_key, parse_nb201, strict_key,
)
from nasforge.spaces.nb201_ops import EDGES, OPERATIONS

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201", cells=1)


def _genomes(n: int, seed: int = 0) -> list[NB201Genome]:
    rng = random.Random(seed)
    sp = get_space("nb201")
    return [sp.sample(rng) for _ in range(n)]


def test_counts_of_cells_and_classes() -> None:
    assert count_unique() == {"cells": 15625, "nb201": 6466, "strict": 5390}


def test_canonical_follows_the_nb201_rule(space) -> None:
    assert len({genome_key(space, g) for g in all_genomes()}) == 6466
    # node 1 a skip: node 2's conv reads node 0 either way (node 1's conv1x1 in b is dead)
    a = parse_nb201("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    b = parse_nb201("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert a != b and genome_key(space, a) == genome_key(space, b)
    assert space.canonical(a) == space.canonical(b)
    c = parse_nb201("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|avg_pool_3x3~2|")
    assert genome_key(space, c) != genome_key(space, a)
    # a none edge is a zero term kept in the sum by NB201's rule, dropped by the strict one
    # (node 2 is "#+#", not recognised as zero by NB201's rule)
    d = parse_nb201("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|")
    e = parse_nb201("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert nb201_key(d) != nb201_key(e) and strict_key(d) == strict_key(e)


def test_string_form_round_trip_and_errors() -> None:
    for g in _genomes(100):
        text = g.to_string()
        assert parse_nb201(text) == g and str(g) == text
    g = parse_nb201(ALL_CONV3)
    assert g.ops == ("nor_conv_3x3",) * 6
    for bad in ("", "|none~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~0|+|none~0|+|none~0|none~1|none~2|"):
        with pytest.raises(GenomeError):
            parse_nb201(bad)


def test_json_round_trip_hashable_and_errors(space) -> None:
    for g in _genomes(100, seed=1):
        data = json.loads(json.dumps(space.genome_to_dict(g)))
        assert space.genome_from_dict(data) == g and hash(space.genome_from_dict(data)) == hash(g)
    assert space.genome_from_dict({"cell": ALL_CONV3}) == parse_nb201(ALL_CONV3)
    for bad in ({"schema": "nasforge.nb201/1", "ops": ["none"] * 5},
                {"schema": "nasforge.nb201/9", "ops": ["none"] * 6},
                {"schema": "nasforge.nb201/1", "ops": ["none"] * 5 + ["conv"]},
                {"schema": "nasforge.nb201/1", "ops": ["none"] * 6, "extra": 1}, [1, 2]):
        with pytest.raises(GenomeError):
            space.genome_from_dict(bad)


def test_settings_rebuild_and_bad_settings() -> None:
    sp = get_space("nb201", cells=2, channels=4, encoding="path")
    assert get_space("nb201", **sp.settings()).settings() == sp.settings()
    for bad in ({"cells": 0}, {"channels": -1}, {"encoding": "bits"}, {"depth": 3}):
        with pytest.raises(ConfigError):
            get_space("nb201", **bad)


def test_count_params_equals_built_and_flops_formula(space) -> None:
    for i, g in enumerate(_genomes(100, seed=2)):
        shape = [(1, 8, 8), (3, 17, 23), (4, 9, 12)][i % 3]
        model = space.build(g, shape, 7, 2)
        assert space.count_params(g, shape, 7, 2) == sum(p.numel() for p in model.parameters())
        if i < 10:
            assert space.count_flops(g, shape, 7, 2) == count_flops(model, shape)
    # published setup (C=16, N=5, 3x32x32, 10 classes): NAS-Bench-201 reports 0.07 M to 1.53 M
    # parameters and 7.78 M to 220.11 M multiply-adds over its cells
    published = get_space("nb201")
    big, empty = parse_nb201(ALL_CONV3), NB201Genome(("none",) * 6)
    assert published.count_params(big, (3, 32, 32), 10, 16) == 1_531_546
    assert published.count_params(empty, (3, 32, 32), 10, 16) == 73_306
    assert published.count_flops(big, (3, 32, 32), 10, 16) == 2 * 220_119_680
    assert published.count_flops(empty, (3, 32, 32), 10, 16) == 2 * 7_783_040


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 17, 23), (4, 8, 9)])
def test_forward_backward_any_input(space, shape) -> None:
    torch.manual_seed(0)
    cells = [parse_nb201(ALL_CONV3), NB201Genome(("none",) * 6)] + _genomes(6, seed=3)
    for g in cells:
        model = space.build(g, shape, 5, 2)
        out = model(torch.randn(2, *shape))
        assert out.shape == (2, 5)
        out.square().mean().backward()
        assert model.stem[0].weight.grad is not None and model.classifier.weight.grad is not None
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_build_refuses_bad_genomes(space) -> None:
    with pytest.raises(GenomeError):
        space.build(NB201Genome(("none",) * 5 + ("conv",)), (1, 8, 8), 10, 4)
    assert space.validate("not a genome")


def test_mutate_crossover_sample(space) -> None:
    rng = random.Random(4)
    for g in _genomes(100, seed=4):
        child = space.mutate(g, rng)
        assert sum(a != b for a, b in zip(g.ops, child.ops)) == 1 and not space.validate(child)
        other = space.sample(rng)
        mix = space.crossover(g, other, rng)
        assert all(m in (a, b) for m, a, b in zip(mix.ops, g.ops, other.ops))
    seen = {space.sample(rng).ops[0] for _ in range(200)}
    assert seen == set(OPERATIONS)


def test_decisions_capability(space) -> None:
    assert "decisions" in space.capabilities and space.decision_length() == 6
    for g in _genomes(100, seed=5):
        seq = space.genome_to_decisions(g)
        assert len(seq) == 6 and space.genome_from_decisions(seq) == g
        for k in range(6):
            assert seq[k] in space.decision_choices(seq[:k])
    assert space.decision_choices([]) == OPERATIONS
    with pytest.raises(GenomeError):
        space.decision_choices(["none"] * 6)
    with pytest.raises(GenomeError):
        space.genome_from_decisions(["none"] * 5)


def test_encodings() -> None:
    onehot = get_space("nb201")
    path = get_space("nb201", encoding="path")
    g = parse_nb201(ALL_CONV3)
    v = onehot.encode(g)
    assert v.shape == (30,) and v.sum() == 6 and onehot.encoding_size() == 30
    p = path.encode(g)
    assert p.shape == (84,) and p.sum() == 3  # sequences of length 1, 2 (two routes), 3
    assert path.encode(NB201Genome(("none",) * 6)).sum() == 0
    only_direct = parse_nb201("|none~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|none~2|")
    assert path.encode(only_direct).sum() == 1
    assert len({tuple(onehot.encode(x)) for x in _genomes(100)}) == len(set(_genomes(100)))


def test_describe_and_dot(space) -> None:
    g = parse_nb201(ALL_CONV3)
    assert space.describe(g, 8).startswith(ALL_CONV3) and "C=8, N=1" in space.describe(g, 8)
    assert space.describe(g, 8, input_shape=(3, 17, 23)).endswith("maps 17x23, 9x12, 5x6")
    dot = space.to_dot(NB201Genome(("none",) + ("skip_connect",) * 5))
    assert dot.count("->") == len(EDGES) and "dashed" in dot
