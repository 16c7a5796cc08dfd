"""Contract tests: every registered search space keeps the SearchSpace contract.

Parametrised over ``available_spaces()`` (timm's pattern): a newly registered space is tested
here without writing a new test. ``TINY`` gives each known space small settings so the builds
stay fast; a space not listed there is tested with its default settings (add it to ``TINY`` if
its defaults build large networks). Each check that belongs to a capability (mutate,
crossover, encode, decisions) runs only where the space declares it, and is then required.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasforge.errors import GenomeError
from nasforge.spaces import (
    SearchSpace,
    available_spaces,
    chosen_network_space,
    genome_key,
    get_space,
)

TINY: dict[str, dict[str, Any]] = {
    "global": {"max_nodes": 6, "head": "gap"},
    "nb201": {"cells": 1},
    "darts": {"cells": 3},
}
INPUT_SHAPE = (1, 12, 12)
NUM_CLASSES = 3
WIDTH = 4
PROBLEMS = [(INPUT_SHAPE, NUM_CLASSES), ((3, 9, 11), 5)]  # and an odd, non-square RGB input
COUNT = 12  # genomes per kind (sampled, mutated, crossed)
BUILT = 3  # genomes built per space (sampled, mutated, crossed: one each)

SPACE_NAMES = available_spaces()


def make_space(name: str) -> SearchSpace:
    return get_space(name, **TINY.get(name, {}))


def with_capability(capability: str) -> list[str]:
    """The registered spaces that declare ``capability`` (the tests of a capability run on
    exactly these, so none is skipped)."""
    return [n for n in SPACE_NAMES if capability in make_space(n).capabilities]


@pytest.fixture(scope="module")
def case(name: str) -> tuple[SearchSpace, dict[str, list[Any]]]:
    """A space and its genomes: ``sampled``, and where the capabilities allow, ``mutated``
    (one mutation of each sample) and ``crossed`` (a sample crossed with the next one); made
    once per space and module (spaces are pure functions, genomes immutable)."""
    space = make_space(name)
    rng = random.Random(7)
    sampled = [space.sample(rng) for _ in range(COUNT)]
    genomes: dict[str, list[Any]] = {"sampled": sampled}
    if "mutate" in space.capabilities:
        genomes["mutated"] = [space.mutate(g, rng) for g in sampled]
    if "crossover" in space.capabilities:
        genomes["crossed"] = [
            space.crossover(a, b, rng) for a, b in zip(sampled, sampled[1:] + sampled[:1])
        ]
    return space, genomes


each_space = pytest.mark.parametrize("name", SPACE_NAMES, scope="module")


def every(genomes: dict[str, list[Any]]) -> list[Any]:
    return [g for group in genomes.values() for g in group]


def test_registered_spaces_include_the_built_ins() -> None:
    assert {"global", "nb201", "darts"} <= set(SPACE_NAMES)


@each_space
def test_name_capabilities_and_settings_round_trip(case) -> None:
    space, _ = case
    assert space.name in SPACE_NAMES
    assert space.capabilities <= {"mutate", "crossover", "encode", "decisions", "cell", "supernet"}
    settings = json.loads(json.dumps(space.settings()))  # stored with a study as JSON
    rebuilt = get_space(space.name, **settings)
    assert type(rebuilt) is type(space) and rebuilt.settings() == space.settings()
    assert type(chosen_network_space(space.name, settings)) is type(space)


@each_space
def test_sample_is_deterministic_for_a_seed(case) -> None:
    space, _ = case
    a = [space.sample(random.Random(3)) for _ in range(2)]
    b = [space.sample(random.Random(3)) for _ in range(2)]
    assert a == b


@each_space
def test_sampled_mutated_and_crossed_genomes_are_valid(case) -> None:
    space, genomes = case
    assert ("mutated" in genomes) == ("mutate" in space.capabilities)
    assert ("crossed" in genomes) == ("crossover" in space.capabilities)
    for kind, group in genomes.items():
        for genome in group:
            assert space.validate(genome) == [], (kind, space.describe(genome))
            hash(genome)  # genomes are hashable plain data
    if "mutate" in space.capabilities:  # a mutation changes the genome (most of the time)
        changed = sum(m != g for m, g in zip(genomes["mutated"], genomes["sampled"]))
        assert changed >= COUNT // 2


@each_space
def test_validate_rejects_a_foreign_object(case) -> None:
    space, _ = case
    for junk in ("not a genome", None, 3):
        try:
            reasons = space.validate(junk)
        except GenomeError:
            continue
        assert reasons, f"validate accepted {junk!r}"


@pytest.mark.parametrize("name", with_capability("encode"), scope="module")
def test_encode_is_a_fixed_length_finite_vector(case) -> None:
    space, genomes = case
    vectors = [np.asarray(space.encode(g)) for g in every(genomes)]
    lengths = {v.shape for v in vectors}
    assert len(lengths) == 1 and len(next(iter(lengths))) == 1, lengths
    assert next(iter(lengths))[0] > 0
    for v in vectors:
        assert np.issubdtype(v.dtype, np.floating) and np.all(np.isfinite(v))
    size = getattr(space, "encoding_size", None)
    if size is not None:
        assert vectors[0].shape[0] == size()
    # the encoding tells networks apart: distinct canonical genomes do not all collide
    assert len({v.tobytes() for v in vectors}) > 1


@each_space
def test_json_round_trip_keeps_genome_and_key(case) -> None:
    space, genomes = case
    for genome in every(genomes):
        data = json.loads(json.dumps(space.genome_to_dict(genome)))
        back = space.genome_from_dict(data)
        assert back == genome
        assert genome_key(space, back) == genome_key(space, genome)


@each_space
def test_genome_from_dict_refuses_unknown_fields(case) -> None:
    space, genomes = case
    data = dict(space.genome_to_dict(genomes["sampled"][0]))
    data["no_such_field"] = 1
    with pytest.raises(GenomeError):
        space.genome_from_dict(data)


@each_space
def test_canonical_form_names_the_same_network(case) -> None:
    space, genomes = case
    for genome in every(genomes):
        canon = space.canonical(genome)
        assert space.validate(canon) == []
        assert space.canonical(canon) == canon  # idempotent
        assert genome_key(space, canon) == genome_key(space, genome)
    # (count_params may differ inside a class: nb201's canonical form follows NAS-Bench-201's
    # rule, which merges cells whose extra operations only see a zero input)


@each_space
def test_describe_is_one_line(case) -> None:
    space, genomes = case
    for genome in genomes["sampled"][:3]:
        text = space.describe(genome)
        assert isinstance(text, str) and text and "\n" not in text


def built_genomes(genomes: dict[str, list[Any]]) -> list[Any]:
    return [group[0] for group in genomes.values()][:BUILT]


def built(space: SearchSpace, genome: Any, input_shape: tuple[int, int, int],
          num_classes: int) -> torch.nn.Module | None:
    """The built module, or None when the genome is over a build-dependent limit there."""
    validate_for = getattr(space, "validate_for", None)
    if validate_for is not None and validate_for(genome, input_shape, num_classes, WIDTH):
        return None
    return space.build(genome, input_shape, num_classes, WIDTH)


@each_space
@pytest.mark.parametrize(("input_shape", "num_classes"), PROBLEMS)
def test_count_params_matches_the_built_module(case, input_shape, num_classes) -> None:
    space, genomes = case
    for genome in built_genomes(genomes):
        model = built(space, genome, input_shape, num_classes)
        if model is None:
            continue
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        counted = space.count_params(genome, input_shape, num_classes, WIDTH)
        assert isinstance(counted, int) and not isinstance(counted, bool)
        assert counted == params > 0


@each_space
@pytest.mark.parametrize(("input_shape", "num_classes"), PROBLEMS)
def test_forward_and_backward_on_a_tiny_input(case, input_shape, num_classes) -> None:
    space, genomes = case
    torch.manual_seed(0)
    x = torch.randn(2, *input_shape)
    y = torch.tensor([0, num_classes - 1])
    tested = 0
    for genome in built_genomes(genomes):
        model = built(space, genome, input_shape, num_classes)
        if model is None:
            continue
        tested += 1
        logits = model.train()(x)
        assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()
        F.cross_entropy(logits, y).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)
        with torch.no_grad():
            assert model.eval()(x[:1]).shape == (1, num_classes)
    assert tested > 0


@each_space
def test_to_dot_draws_or_is_not_offered(case) -> None:
    space, genomes = case
    try:
        text = space.to_dot(genomes["sampled"][0])
    except NotImplementedError:
        return
    assert text.lstrip().startswith("digraph") and text.rstrip().endswith("}")


@pytest.mark.parametrize("name", with_capability("decisions"), scope="module")
def test_decisions_round_trip(case) -> None:
    space, genomes = case
    length = space.decision_length
    assert isinstance(length, int) and length > 0
    names = space.decision_names()
    assert len(names) == length and len(set(names)) == length
    for genome in every(genomes):
        seq = tuple(space.to_decisions(genome))
        assert len(seq) == length
        for step, value in enumerate(seq):
            assert value in space.decision_choices(seq[:step])
        back = space.from_decisions(seq)
        assert back == genome and tuple(space.to_decisions(back)) == seq
    with pytest.raises(GenomeError):
        space.decision_choices(seq)  # a full sequence has no next step
    with pytest.raises(GenomeError):
        space.from_decisions(seq[:-1])
    # a sequence drawn step by step from decision_choices is a valid genome
    rng = random.Random(1)
    drawn: list[Any] = []
    while len(drawn) < length:
        drawn.append(rng.choice(list(space.decision_choices(drawn))))
    assert space.validate(space.from_decisions(drawn)) == []

