"""The global (REMNet) DAG space: genome form, canonical identity, mutations, counts, text."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import pickle
import random
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces import (
    MERGE_POLICIES,
    GlobalGenome,
    GlobalSpace,
    available_spaces,
    get_space,
    register_operation,
    remnet_best_genome,
)
from nasforge.spaces.global_dag import (
    EdgeGene,
    NodeGene,
    add_edge,
    split_edge,
    toggle_edge,
)
from nasforge.spaces.ops import ALL_BUILTIN_OPERATIONS, REMNET_OPERATIONS

SRC = str(Path(__file__).resolve().parents[1] / "src")
MNIST = ((1, 28, 28), 10)
CIFAR7 = ((3, 32, 32), 7)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is as fast and does not suffer from a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def evolved(space: GlobalSpace, rng: random.Random, steps: int = 10) -> GlobalGenome:
    """A sampled genome mutated up to ``steps`` times, or a child of two of them."""
    genome = space.sample(rng)
    for _ in range(rng.randrange(steps + 1)):
        genome = space.mutate(genome, rng)
    if rng.random() < 0.3:
        other = space.sample(rng)
        for _ in range(rng.randrange(steps + 1)):
            other = space.mutate(other, rng)
        genome = space.crossover(genome, other, rng)
    return genome


def relabelled(genome: GlobalGenome, rng: random.Random) -> GlobalGenome:
    """The same genes under fresh ids and in shuffled order, plus junk inactive genes."""
    names = {n.id: f"x{rng.randrange(10**9)}_{i}" for i, n in enumerate(genome.nodes)}
    names.update({"in": "in", "out": "out"})
    nodes = [NodeGene(names[n.id], n.op) for n in genome.nodes]
    edges = [EdgeGene(names[e.src], names[e.dst], e.enabled) for e in genome.edges]
    nodes.append(NodeGene("junk", "conv3N"))  # dangling: reachable from in, not to out
    edges.append(EdgeGene("in", "junk", True))
    rng.shuffle(nodes)
    rng.shuffle(edges)
    return GlobalGenome(tuple(nodes), tuple(edges))


# ----------------------------------------------------------------------------- registry
def test_registered_and_capabilities() -> None:
    assert "global" in available_spaces()
    space = get_space("global", max_nodes=8, head="remnet")
    assert isinstance(space, GlobalSpace)
    assert space.capabilities == {"mutate", "crossover", "encode"}
    again = get_space("global", **json.loads(json.dumps(space.settings())))
    assert again.settings() == space.settings()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        GlobalSpace(operations=["conv3N", "nope"])
    with pytest.raises(ConfigError):
        GlobalSpace(head="mlp")
    with pytest.raises(ConfigError):
        GlobalSpace(merge_policy="nope")
    with pytest.raises(ConfigError):
        GlobalSpace(mutation_probs={"split": 0.5})  # no longer sums to 1
    with pytest.raises(ConfigError):
        GlobalSpace(mutation_probs={"grow": 0.1})
    with pytest.raises(ConfigError):
        get_space("global", colour="red")


# ----------------------------------------------------------------------------- JSON form
def test_json_round_trip_is_exact() -> None:
    space = GlobalSpace()
    rng = random.Random(3)
    for _ in range(50):
        genome = evolved(space, rng)
        data = space.genome_to_dict(genome)
        text = json.dumps(data)
        back = space.genome_from_dict(json.loads(text))
        assert back.to_dict() == data
        assert back.nodes == genome.nodes and back.edges == genome.edges
        assert back == genome and hash(back) == hash(genome)
    assert data["schema"] == "nasforge.global/1"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.update(schema="nasforge.global/2"), "unknown genome schema"),
        (lambda d: d.pop("edges"), "missing field"),
        (lambda d: d["nodes"][0].update(colour="red"), "unknown field"),
        (lambda d: d["nodes"][0].update(op=3), "must be strings"),
        (lambda d: d["edges"][0].update(enabled=1), "true or false"),
        (lambda d: d["edges"][0].update(dst="ghost"), "unknown target"),
        (lambda d: d["nodes"].append(dict(d["nodes"][0])), "duplicate node id"),
        (lambda d: d["nodes"][0].update(id="in"), "reserved"),
        (lambda d: d.update(nodes="n1"), "must be lists"),
    ],
)
def test_bad_json_is_one_line_genome_error(mutate, message: str) -> None:
    data = remnet_best_genome().to_dict()
    mutate(data)
    with pytest.raises(GenomeError, match=message) as info:
        GlobalGenome.from_dict(data)
    assert "\n" not in str(info.value)


def test_pickle_and_copy_keep_genes() -> None:
    genome = remnet_best_genome()
    genome.key()  # fill the cache; it must not travel
    for back in (pickle.loads(pickle.dumps(genome)), copy.deepcopy(genome)):
        assert back.to_dict() == genome.to_dict() and back == genome
    assert [f.name for f in dataclasses.fields(genome)] == ["nodes", "edges"]
    assert dataclasses.asdict(genome)["nodes"][0] == {"id": genome.nodes[0].id, "op": "conv2N"}


def test_from_dict_rejects_non_objects() -> None:
    with pytest.raises(GenomeError):
        GlobalGenome.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(GenomeError):
        GlobalGenome.from_dict({"schema": "nasforge.global/1", "nodes": [1], "edges": []})


# ----------------------------------------------------------------------------- identity
def test_ids_are_content_derived() -> None:
    space = GlobalSpace()
    a = split_edge(space.initial(), "in", "out", "conv3N")
    b = split_edge(space.initial(), "in", "out", "conv3N")
    c = split_edge(space.initial(), "in", "out", "conv5N")
    assert a.nodes[0].id == b.nodes[0].id != c.nodes[0].id
    assert len(a.nodes[0].id) == 10 and int(a.nodes[0].id, 16) >= 0
    # the same split again (after re-enabling the edge) gets a distinct, still derived id
    again = split_edge(toggle_edge(a, "in", "out"), "in", "out", "conv3N")
    assert len({n.id for n in again.nodes}) == 2


def test_differently_numbered_same_network_is_equal() -> None:
    best = remnet_best_genome()
    ops = ["conv3H", "avgpool5", "conv2N", "conv5N", "conv3H", "conv2N", "conv3N"]
    ids = ["q", "p", "a", "d", "r", "b", "c"]
    nodes = tuple(NodeGene(i, o) for i, o in zip(ids, ops))
    edges = (
        EdgeGene("r", "out"), EdgeGene("p", "q"), EdgeGene("in", "a"), EdgeGene("a", "b"),
        EdgeGene("b", "c"), EdgeGene("c", "d"), EdgeGene("d", "p"), EdgeGene("p", "r"),
        EdgeGene("q", "out"), EdgeGene("in", "out", False),
    )
    by_hand = GlobalGenome(nodes, edges)
    assert by_hand == best
    assert hash(by_hand) == hash(best)
    assert by_hand.key() == best.key()
    assert len({by_hand, best}) == 1
    assert by_hand.to_dict() != best.to_dict()  # gene-exact forms differ
    assert GlobalSpace().canonical(by_hand).to_dict() == best.canonical().to_dict()


def test_canonical_is_invariant_to_ids_order_and_junk() -> None:
    space = GlobalSpace()
    rng = random.Random(11)
    for _ in range(150):
        genome = evolved(space, rng)
        other = relabelled(genome, rng)
        assert other == genome and hash(other) == hash(genome)
        canon = genome.canonical()
        assert canon.canonical().to_dict() == canon.to_dict()  # idempotent
        assert all(e.enabled for e in canon.edges)
        assert [n.id for n in canon.nodes] == [f"n{i + 1}" for i in range(len(canon.nodes))]


def test_canonical_tells_downstream_differences_apart() -> None:
    """Two same-op nodes with the same inputs that differ only in what follows them."""
    nodes = (NodeGene("a", "conv3N"), NodeGene("b", "conv3N"), NodeGene("c", "avgpool2"))
    edges = (EdgeGene("in", "a"), EdgeGene("in", "b"), EdgeGene("b", "c"),
             EdgeGene("a", "out"), EdgeGene("c", "out"))
    g1 = GlobalGenome(nodes, edges)
    swapped = {"a": "b", "b": "a", "c": "c", "in": "in", "out": "out"}
    g2 = GlobalGenome(
        tuple(NodeGene(swapped[n.id], n.op) for n in nodes),
        tuple(EdgeGene(swapped[e.src], swapped[e.dst]) for e in edges),
    )
    assert g1 == g2 and g1.canonical().to_dict() == g2.canonical().to_dict()


def _isomorphic(a: GlobalGenome, b: GlobalGenome) -> bool:
    """Brute force: same ops and edges under some op-preserving renumbering."""
    ca, cb = a.canonical(), b.canonical()
    if sorted(n.op for n in ca.nodes) != sorted(n.op for n in cb.nodes):
        return False
    ea = {(e.src, e.dst) for e in ca.edges}
    eb = {(e.src, e.dst) for e in cb.edges}
    ids_a = [n.id for n in ca.nodes]
    ops_a, ops_b = ca.ops, cb.ops
    for perm in itertools.permutations([n.id for n in cb.nodes]):
        m = dict(zip(ids_a, perm), **{"in": "in", "out": "out"})
        if all(ops_a[i] == ops_b[m[i]] for i in ids_a) and {
            (m[s], m[d]) for s, d in ea
        } == eb:
            return True
    return False


def test_key_equality_matches_isomorphism() -> None:
    """With two operations and few nodes, collisions are common: keys must agree with a
    brute-force isomorphism check both ways."""
    space = GlobalSpace(
        operations=["conv3N", "avgpool2"], initial_mutations=3,
        mutation_probs={"split": 0.2, "identity": 0.0, "op": 0.2, "toggle": 0.3, "add_edge": 0.3},
    )
    rng = random.Random(5)
    pool = []
    for _ in range(120):
        g = space.sample(rng)
        for _ in range(rng.randrange(4)):
            g = space.mutate(g, rng)
        if len(g.canonical().nodes) <= 6:
            pool.append(g)
    same = 0
    for a, b in itertools.combinations(pool[:70], 2):
        iso = _isomorphic(a, b)
        assert (a.key() == b.key()) == iso
        same += iso
    assert same > 5  # the check did meet isomorphic pairs with different genes


def test_key_is_stable_across_processes() -> None:
    space = GlobalSpace()
    genomes = [remnet_best_genome(), *(evolved(space, random.Random(i)) for i in range(5))]
    payload = json.dumps([g.to_dict() for g in genomes])
    code = (
        "import json,sys\n"
        "from nasforge.spaces import GlobalGenome\n"
        "data=json.loads(sys.stdin.read())\n"
        "print(json.dumps([GlobalGenome.from_dict(d).key() for d in data]))\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONHASHSEED="123")
    out = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, text=True,
        env=env, check=True, timeout=60,
    )
    assert json.loads(out.stdout) == [g.key() for g in genomes]
    assert all(len(k) == 64 for k in json.loads(out.stdout))


def test_different_networks_have_different_keys() -> None:
    best = remnet_best_genome()
    node = best.nodes[0]
    from nasforge.spaces.global_dag import change_op

    assert change_op(best, node.id, "conv3N") != best
    assert GlobalSpace().initial() != best


# ----------------------------------------------------------------------------- known answer
def test_remnet_128_has_791338_parameters() -> None:
    # Hand count (conv bias on, BatchNorm affine on; no 1x1 conv: both conv3H give 64x2x2):
    convs = [(1, 128, 2), (128, 128, 2), (128, 128, 3), (128, 128, 5), (128, 64, 3), (128, 64, 3)]
    body = sum(ci * co * k * k + co + 2 * co for ci, co, k in convs)
    head = (256 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)  # 64*2*2 -> 64 -> 32 -> 10
    assert body + head == 791_338
    space = GlobalSpace(head="remnet", merge_policy="remnet")
    genome = remnet_best_genome()
    assert space.validate(genome) == []
    assert space.count_params(genome, (1, 28, 28), 10, 128) == 791_338
    model = space.build(genome, (1, 28, 28), 10, 128)
    assert numel(model) == 791_338
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())
    plan = space.plan(genome, (1, 28, 28), 10, 128)
    assert [p.out_shape[1] for p in plan.nodes] == [27, 26, 24, 20, 4, 2, 2]
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert (
        space.describe(genome, 128)
        == "in -> conv2(128) -> conv2(128) -> conv3(128) -> conv5(128) -> avgpool5 -> "
        "{conv3(64), conv3(64)} -> out"
    )


@pytest.mark.parametrize("head", ["gap", "remnet"])
@pytest.mark.parametrize("policy", sorted(MERGE_POLICIES))
def test_count_params_equals_built_numel(head: str, policy: str) -> None:
    space = GlobalSpace(head=head, merge_policy=policy, max_nodes=12)
    rng = random.Random(zlib.crc32(f"{head}/{policy}".encode()))
    checked = 0
    for i in range(40):
        genome = evolved(space, rng)
        shape, classes = MNIST if i % 2 else CIFAR7
        if space.validate_for(genome, shape, classes, 8):
            continue
        assert space.count_params(genome, shape, classes, 8) == numel(
            space.build(genome, shape, classes, 8)
        )
        checked += 1
    assert checked >= 30


def test_every_builtin_and_user_operation_counts_right() -> None:
    def gated(geometry):  # a user operation without a param formula: counted on "meta"
        return nn.Sequential(
            nn.Conv2d(geometry.in_channels, geometry.out_channels, geometry.kernel),
            nn.GroupNorm(1, geometry.out_channels),
        )

    register_operation("gated3N", gated, channels="N", kernel=3, stem="gated", overwrite=True)
    ops = list(ALL_BUILTIN_OPERATIONS) + ["gated3N"]
    space = GlobalSpace(operations=ops, max_nodes=12, initial_mutations=6)
    rng = random.Random(8)
    for i in range(60):
        genome = evolved(space, rng, steps=6)
        shape, classes = MNIST if i % 2 else CIFAR7
        if space.validate_for(genome, shape, classes, 6):
            continue
        model = space.build(genome, shape, classes, 6)
        assert space.count_params(genome, shape, classes, 6) == numel(model)
        assert model(torch.randn(2, *shape)).shape == (2, classes)
    for name in ops:  # each operation alone, directly after the input
        genome = split_edge(space.initial(), "in", "out", name)
        model = space.build(genome, (3, 9, 9), 4, 6)
        assert space.count_params(genome, (3, 9, 9), 4, 6) == numel(model)
        assert model(torch.randn(2, 3, 9, 9)).shape == (2, 4)


def test_count_params_does_not_allocate_huge_heads() -> None:
    space = GlobalSpace(head="remnet", operations=["conv3N_pad"], max_params=10**7)
    genome = space.initial()
    for _ in range(3):
        genome = split_edge(genome, genome.edges[-1].src, "out", "conv3N_pad")
    n = 4096 * 64 * 64  # 4096 channels at 64x64: the head alone has ~4.4e13 weights
    count = space.count_params(genome, (3, 64, 64), 10, 4096)
    assert count > (n * n) // 4
    assert any("over max_params" in r for r in space.validate_for(genome, (3, 64, 64), 10, 4096))
    with pytest.raises(GenomeError, match="max_params"):
        space.build(genome, (3, 64, 64), 10, 4096)


def test_max_params_rejects_and_accepts() -> None:
    genome = remnet_best_genome()
    tight = GlobalSpace(head="remnet", max_params=791_337)
    loose = GlobalSpace(head="remnet", max_params=791_338)
    reasons = tight.validate_for(genome, (1, 28, 28), 10, 128)
    assert reasons == ["791,338 parameters, over max_params=791,337"]
    assert loose.validate_for(genome, (1, 28, 28), 10, 128) == []
    assert tight.validate(genome) == []  # the shape-free check knows no parameter count


# ----------------------------------------------------------------------------- text
def test_kernel_clamping_shows_in_text_and_builds() -> None:
    space = GlobalSpace()
    genome = space.initial()
    for op in ("conv5N", "maxpool5", "conv5H", "avgpool5"):
        genome = split_edge(genome, genome.edges[-1].src, "out", op)
    # 12 -> conv5 -> 8 -> maxpool5 -> 1; conv5 and avgpool5 on 1x1 are clamped to 1
    nominal = "in -> conv5(16) -> maxpool5 -> conv5(8) -> avgpool5 -> out"
    assert space.describe(genome, 16) == nominal
    text = space.describe(genome, 16, input_shape=(1, 12, 12))
    assert text == "in -> conv5(16) -> maxpool5 -> conv1(8) -> avgpool1 -> out"
    assert space.describe(genome, None, (1, 12, 12)) == (
        "in -> conv5(C) -> maxpool5 -> conv1(C/2) -> avgpool1 -> out"
    )
    model = space.build(genome, (1, 12, 12), 3, 16)
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 3)
    wide = space.describe(genome, 4, input_shape=(1, 12, 7))  # non-square clamp
    assert "conv5x5" not in wide and "maxpool5x3" in wide


def test_describe_dag_and_dot() -> None:
    space = GlobalSpace()
    genome = split_edge(space.initial(), "in", "out", "conv2N")
    node = genome.nodes[0].id
    genome = split_edge(genome, node, "out", "conv3H")
    genome = toggle_edge(genome, "in", "out")  # skip connection in -> out
    text = space.describe(genome, 128)
    assert text == "n1=conv2(128)(in); n2=conv3(64)(n1); out=sum(in,n2)"
    dot = space.to_dot(genome, 128, (1, 28, 28))
    assert dot.startswith("digraph genome {") and '"in" -> "out";' in dot
    assert "conv3(64)\\n64x25x25" in dot and '"out" [label="out (sum)' in dot
    assert space.describe(space.initial()) == "in -> out"


# ----------------------------------------------------------------------------- validity
def test_validate_reasons() -> None:
    space = GlobalSpace(max_nodes=2)
    nodes = (NodeGene("a", "conv3N"), NodeGene("b", "warp9"), NodeGene("c", "conv3N_pad"))
    cyclic = GlobalGenome(nodes, (EdgeGene("in", "a"), EdgeGene("a", "c"), EdgeGene("c", "a")))
    reasons = space.validate(cyclic)
    assert any("unknown operation 'warp9'" in r for r in reasons)
    assert any("'conv3N_pad' is not in this space" in r for r in reasons)
    assert any(r.startswith("cycle among enabled edges") for r in reasons)
    assert "no enabled path from in to out" in reasons
    assert "3 nodes, over max_nodes=2" in reasons
    with pytest.raises(GenomeError):
        space.build(cyclic, (1, 28, 28), 10, 8)
    assert "invalid genome" in space.describe(
        GlobalGenome(nodes[:1] + nodes[2:], (EdgeGene("in", "a"), EdgeGene("a", "c"),
                                            EdgeGene("c", "a"), EdgeGene("c", "out")))
    )


def test_sample_and_initial() -> None:
    space = GlobalSpace()
    assert space.initial().enabled_edges == [("in", "out")]
    rng = random.Random(0)
    for _ in range(30):
        genome = space.sample(rng)
        assert len(genome.nodes) == 4 and space.validate(genome) == []


def test_sampling_is_reproducible() -> None:
    space = GlobalSpace()
    a = [evolved(space, random.Random(9)).to_dict() for _ in range(2)]
    assert a[0] == a[1]


# ----------------------------------------------------------------------------- mutation
def test_mutation_frequencies_follow_the_published_probabilities() -> None:
    space = GlobalSpace()
    rng = random.Random(2024)
    parents = [space.sample(rng) for _ in range(50)]
    counts: Counter[str] = Counter()
    draws = 20_000
    for i in range(draws):
        _, kind = space.mutate_traced(parents[i % 50], rng)
        counts[kind] += 1
    expected = {"split": 0.25, "identity": 0.05, "op": 0.35, "toggle": 0.35}
    for kind, p in expected.items():
        assert abs(counts[kind] / draws - p) < 0.015, (kind, counts)
    assert counts["add_edge"] == 0  # off by default, as published


def test_add_edge_when_configured() -> None:
    space = GlobalSpace(mutation_probs={"add_edge": 0.35, "toggle": 0.0})
    rng = random.Random(4)
    counts: Counter[str] = Counter()
    for _ in range(400):
        child, kind = space.mutate_traced(space.sample(rng), rng)
        counts[kind] += 1
        assert space.validate(child) == []
    assert counts["add_edge"] > 80 and counts["toggle"] == 0


def test_toggle_never_disconnects_or_cycles() -> None:
    space = GlobalSpace(max_nodes=30, mutation_probs={
        "split": 0.15, "identity": 0.0, "op": 0.0, "toggle": 0.6, "add_edge": 0.25})
    rng = random.Random(7)
    for _ in range(40):
        genome = space.sample(rng)
        for _ in range(25):
            genome, kind = space.mutate_traced(genome, rng)
            assert space.validate(genome) == [], kind


def test_mutate_changes_one_thing_and_keeps_ids() -> None:
    space = GlobalSpace()
    rng = random.Random(1)
    for _ in range(200):
        parent = space.sample(rng)
        child, kind = space.mutate_traced(parent, rng)
        if kind == "identity":
            assert child is parent
        elif kind == "op":
            assert [n.id for n in child.nodes] == [n.id for n in parent.nodes]
            assert sum(a.op != b.op for a, b in zip(child.nodes, parent.nodes)) == 1
        elif kind == "toggle":
            assert sum(a.enabled != b.enabled for a, b in zip(child.edges, parent.edges)) == 1
        elif kind == "split":
            assert len(child.nodes) == len(parent.nodes) + 1


def test_mutate_valid_respects_limits() -> None:
    space = GlobalSpace(max_nodes=5, head="remnet", max_params=200_000)
    rng = random.Random(3)
    for _ in range(30):
        genome = space.sample(rng)
        if space.validate_for(genome, (1, 28, 28), 10, 8):
            continue
        for _ in range(5):
            genome = space.mutate_valid(genome, rng, (1, 28, 28), 10, 8)
            assert space.validate_for(genome, (1, 28, 28), 10, 8) == []


def test_split_at_the_node_limit_drops_inactive_genes() -> None:
    space = GlobalSpace(max_nodes=2, mutation_probs={"split": 1.0, "identity": 0.0, "op": 0.0,
                                                     "toggle": 0.0})
    nodes = (NodeGene("a", "conv3N"), NodeGene("b", "conv3N"))
    edges = (EdgeGene("in", "a"), EdgeGene("a", "out"), EdgeGene("in", "b"),
             EdgeGene("b", "out", False))
    genome = GlobalGenome(nodes, edges)
    child, kind = space.mutate_traced(genome, random.Random(0))
    assert kind == "split" and len(child.nodes) == 2
    assert "b" not in child.ops and "a" in child.ops
    assert space.validate(child) == []
    with pytest.raises(GenomeError):
        add_edge(genome, "in", "a")  # already there


# ----------------------------------------------------------------------------- crossover
@pytest.mark.parametrize("genes", ["parent", "union"])
def test_crossover_aligns_by_id_and_is_valid(genes: str) -> None:
    space = GlobalSpace(max_nodes=40, crossover_genes=genes)
    rng = random.Random(12)
    for _ in range(200):
        base = space.sample(rng)
        a, b = base, base
        for _ in range(rng.randrange(1, 6)):
            a = space.mutate(a, rng)
        for _ in range(rng.randrange(1, 6)):
            b = space.mutate(b, rng)
        child = space.crossover(a, b, rng)
        assert space.validate(child) == []
        ids = {n.id for n in child.nodes}
        assert ids <= {n.id for n in a.nodes} | {n.id for n in b.nodes}
        if genes == "parent":
            assert ids in ({n.id for n in a.nodes}, {n.id for n in b.nodes})
        if genes == "union":
            assert ids == {n.id for n in a.nodes} | {n.id for n in b.nodes}


def test_crossover_repairs_cycles() -> None:
    space = GlobalSpace(crossover_genes="union")
    nodes = (NodeGene("a", "conv3N"), NodeGene("b", "conv3N"))
    a = GlobalGenome(nodes, (EdgeGene("in", "a"), EdgeGene("a", "b"), EdgeGene("b", "out")))
    b = GlobalGenome(nodes, (EdgeGene("in", "b"), EdgeGene("b", "a"), EdgeGene("a", "out")))
    for seed in range(20):
        child = space.crossover(a, b, random.Random(seed))
        assert space.validate(child) == []


# ----------------------------------------------------------------------------- encoding
def test_encode_fixed_length_and_invariant() -> None:
    space = GlobalSpace(max_nodes=10)
    rng = random.Random(6)
    size = space.encoding_size()
    assert size == 12 * 11 // 2 + 10 * 12
    for _ in range(50):
        genome = evolved(space, rng, steps=4)
        if space.validate(genome):
            continue
        vec = space.encode(genome)
        assert vec.shape == (size,) and vec.dtype == np.float32
        assert np.array_equal(vec, space.encode(relabelled(genome, rng)))
        onehot = vec[12 * 11 // 2 :].reshape(10, 12)
        assert onehot.sum() == len(genome.canonical().nodes)
    best = space.encode(remnet_best_genome())
    assert best[: 12 * 11 // 2].sum() == 9  # nine enabled active edges


def test_remnet_operations_are_the_default() -> None:
    assert GlobalSpace().operations == REMNET_OPERATIONS
    assert len(REMNET_OPERATIONS) == 12


def test_input_ops_keep_pooling_off_the_input_image() -> None:
    import json
    import random
    from pathlib import Path

    from nasforge.errors import ConfigError
    from nasforge.spaces import chosen_network_space, get_space

    convs = ["conv3N_pad", "conv5N", "sep3N"]
    ops = convs + ["maxpool2", "avgpool2"]
    space = get_space("global", operations=ops, max_nodes=8, input_ops=convs)
    rng = random.Random(0)
    for _ in range(100):  # samples and mutations draw the op of a node after the input from it
        sample = space.sample(rng)
        assert space.validate(sample) == []
        genome = space.mutate(sample, rng)
        firsts = {e.dst for e in genome.edges if e.enabled and e.src == "in"} - {"out"}
        ops_of = {n.id: n.op for n in genome.nodes}
        problems = space.validate(genome)
        assert all(ops_of[n] in convs for n in firsts) or problems
    root = Path(__file__).resolve().parent.parent
    pool_first = json.loads((root / "experiments/speed/quick_slow_bf16_genome.json").read_text())
    reasons = get_space("global", operations=ops + ["conv3N"], input_ops=convs).validate(
        space.genome_from_dict(pool_first))
    assert any("'maxpool2' reads the input image" in r for r in reasons)
    # a search limit: a chosen network of that kind still builds for final training or export
    settings = {"operations": ops + ["conv3N"], "input_ops": convs}
    assert chosen_network_space("global", settings).validate(
        space.genome_from_dict(pool_first)) == []
    assert get_space("global", **get_space("global", **settings).settings()).input_ops == tuple(convs)
    for bad in ("conv3N_pad", [], ["conv7"]):
        with pytest.raises(ConfigError, match="input_ops"):
            get_space("global", operations=ops, input_ops=bad)
