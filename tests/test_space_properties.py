"""Property test: genomes the global space makes are valid (but for limits) and train.

Over 2,000 genomes in all (sampled, mutated up to 10 times, crossed), at width 8, both heads,
every named merge policy, on (1, 28, 28)/10 classes and (3, 32, 32)/7 classes: at least 95%
validate, rejections are only for limits, and every valid one builds, gives (batch, classes)
logits, back-propagates, counts its parameters exactly and round-trips through JSON.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasforge.spaces import MERGE_POLICIES, GlobalGenome, GlobalSpace

PROBLEMS = [((1, 28, 28), 10), ((3, 32, 32), 7)]
HEADS = ["gap", "remnet"]
WIDTH = 8
PER_EXAMPLE = 25
EXAMPLES = 100
SPACES = {
    (head, policy): GlobalSpace(max_nodes=10, head=head, merge_policy=policy)
    for head in HEADS
    for policy in MERGE_POLICIES
}
LIMITS = ("over max_nodes=", "over max_params=")


def make_genomes(space: GlobalSpace, rng: random.Random, count: int) -> list[GlobalGenome]:
    """Sampled, mutated (1-10 times) and crossed genomes, a third each."""

    def mutated() -> GlobalGenome:
        genome = space.sample(rng)
        for _ in range(rng.randint(1, 10)):
            genome = space.mutate(genome, rng)
        return genome

    out = []
    for i in range(count):
        if i % 3 == 0:
            out.append(space.sample(rng))
        elif i % 3 == 1:
            out.append(mutated())
        else:
            out.append(space.crossover(mutated(), mutated(), rng))
    return out


def test_generated_genomes_are_valid_and_train() -> None:
    stats: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        seed=st.integers(0, 2**32 - 1),
        head=st.sampled_from(HEADS),
        policy=st.sampled_from(sorted(MERGE_POLICIES)),
        problem=st.sampled_from(PROBLEMS),
    )
    def check(seed: int, head: str, policy: str, problem: tuple) -> None:
        space = SPACES[(head, policy)]
        shape, classes = problem
        rng = random.Random(seed)
        torch.manual_seed(seed % 2**31)
        for genome in make_genomes(space, rng, PER_EXAMPLE):
            stats["total"] += 1
            data = json.loads(json.dumps(space.genome_to_dict(genome)))
            assert space.genome_from_dict(data).to_dict() == data
            reasons = space.validate_for(genome, shape, classes, WIDTH)
            if reasons:
                assert all(any(limit in r for limit in LIMITS) for r in reasons), reasons
                stats["rejected"] += 1
                continue
            assert space.encode(genome).shape == (space.encoding_size(),)
            model = space.build(genome, shape, classes, WIDTH)
            params = list(model.parameters())
            assert sum(p.numel() for p in params) == space.count_params(
                genome, shape, classes, WIDTH
            )
            x = torch.randn(2, *shape)
            logits = model(x)
            assert logits.shape == (2, classes)
            loss = F.cross_entropy(logits, torch.tensor([0, classes - 1]))
            loss.backward()
            assert all(p.grad is not None for p in params)
            assert torch.isfinite(loss)
            stats["built"] += 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only add contention
    try:
        check()
    finally:
        torch.set_num_threads(threads)
    assert stats["total"] >= 2000, stats
    assert stats["built"] / stats["total"] >= 0.95, stats
