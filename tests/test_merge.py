"""Merge policies: each promises an alignment (shapes, padding, interpolation, combine)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces import MERGE_POLICIES, GlobalSpace, MergePolicy, get_space
from nasforge.spaces.global_dag import split_edge, toggle_edge
from nasforge.spaces.merge import (
    Merge,
    get_merge_policy,
    merge_output_shape,
    merge_params,
    merge_problems,
)

BIG = (8, 10, 10)
SMALL = (4, 6, 6)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is as fast and does not suffer from a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(policy: MergePolicy, shapes=(BIG, SMALL)) -> tuple[Merge, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    merge = Merge(shapes, policy)
    xs = [torch.randn(2, *s) for s in shapes]
    out = merge(xs)
    assert tuple(out.shape[1:]) == merge_output_shape(shapes, policy)
    assert numel(merge) == merge_params(shapes, policy)
    return merge, xs, out


def test_named_policies_exist() -> None:
    assert {"remnet", "pad-largest-sum", "interp-smallest-concat"} <= set(MERGE_POLICIES)
    assert MERGE_POLICIES["remnet"] == MergePolicy(
        spatial="interpolate", spatial_target="smallest", channels="conv1x1",
        channel_target="smallest", combine="sum",
    )


def test_remnet_interpolates_to_smallest_and_convs_to_fewest_channels() -> None:
    merge, xs, out = run(MERGE_POLICIES["remnet"])
    assert out.shape == (2, 4, 6, 6)
    assert merge_params((BIG, SMALL), MERGE_POLICIES["remnet"]) == 8 * 4 + 4  # one 1x1 conv
    conv = merge.align[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    assert isinstance(merge.align[1], nn.Identity)
    expected = F.interpolate(conv(xs[0]), size=(6, 6), mode="nearest") + xs[1]
    assert torch.allclose(out, expected)


def test_pad_largest_sum_zero_pads_and_convs_to_most_channels() -> None:
    merge, xs, out = run(MERGE_POLICIES["pad-largest-sum"])
    assert out.shape == (2, 8, 10, 10)
    assert merge_params((BIG, SMALL), MERGE_POLICIES["pad-largest-sum"]) == 4 * 8 + 8
    lifted = merge.align[1](xs[1])
    # the small map sits centred (2 rows/cols of zeros each side); outside it only x0 counts
    assert torch.allclose(out[..., :2, :], xs[0][..., :2, :])
    assert torch.allclose(out[..., :, 8:], xs[0][..., :, 8:])
    assert torch.allclose(out[..., 2:8, 2:8], xs[0][..., 2:8, 2:8] + lifted)


def test_interp_largest_sum_upsamples() -> None:
    merge, xs, out = run(MERGE_POLICIES["interp-largest-sum"])
    assert out.shape == (2, 8, 10, 10)
    up = F.interpolate(merge.align[1](xs[1]), size=(10, 10), mode="nearest")
    assert torch.allclose(out, xs[0] + up)


def test_interp_smallest_concat_keeps_channels() -> None:
    merge, xs, out = run(MERGE_POLICIES["interp-smallest-concat"])
    assert out.shape == (2, 12, 6, 6)
    assert numel(merge) == 0
    assert torch.allclose(out[:, :8], F.interpolate(xs[0], size=(6, 6), mode="nearest"))
    assert torch.allclose(out[:, 8:], xs[1])


def test_pad_largest_concat_keeps_channels_and_zero_pads() -> None:
    _, xs, out = run(MERGE_POLICIES["pad-largest-concat"])
    assert out.shape == (2, 12, 10, 10)
    assert torch.allclose(out[:, :8], xs[0])
    small = out[:, 8:]
    assert torch.count_nonzero(small[..., :2, :]) == 0
    assert torch.count_nonzero(small[..., 8:, :]) == 0
    assert torch.allclose(small[..., 2:8, 2:8], xs[1])


def test_sum_and_concat_give_different_channel_counts() -> None:
    shapes = [(8, 5, 5), (8, 5, 5), (8, 5, 5)]
    summed = merge_output_shape(shapes, MergePolicy(combine="sum"))
    stacked = merge_output_shape(shapes, MergePolicy(combine="concat"))
    assert summed == (8, 5, 5) and stacked == (24, 5, 5)
    xs = [torch.ones(1, *s) for s in shapes]
    assert torch.all(Merge(shapes, MergePolicy(combine="sum"))(xs) == 3)
    assert Merge(shapes, MergePolicy(combine="concat"))(xs).shape == (1, 24, 5, 5)
    # conv1x1 + concat aligns channels first: 3 inputs of 4 channels each
    mixed = [(8, 5, 5), (4, 5, 5), (6, 5, 5)]
    assert merge_output_shape(mixed, MergePolicy(combine="concat")) == (12, 5, 5)


def test_pad_to_smallest_centre_crops() -> None:
    policy = MergePolicy(spatial="pad", spatial_target="smallest", channels="none",
                         combine="concat")
    _, xs, out = run(policy, shapes=((2, 7, 7), (2, 3, 3)))
    assert out.shape == (2, 4, 3, 3)
    assert torch.allclose(out[:, :2], xs[0][..., 2:5, 2:5])


def test_non_square_targets_per_dimension() -> None:
    shapes = [(3, 4, 9), (3, 7, 2)]
    assert merge_output_shape(shapes, MergePolicy(spatial_target="smallest")) == (3, 4, 2)
    largest = MergePolicy(spatial="pad", spatial_target="largest")
    assert merge_output_shape(shapes, largest) == (3, 7, 9)
    for policy in MERGE_POLICIES.values():
        run(policy, shapes=tuple(shapes))


def test_single_input_passes_through() -> None:
    x = torch.randn(1, 3, 4, 4)
    for policy in MERGE_POLICIES.values():
        assert merge_output_shape([(3, 4, 4)], policy) == (3, 4, 4)
        assert Merge([(3, 4, 4)], policy)([x]) is x


def test_channels_none_with_sum_needs_equal_widths() -> None:
    policy = MergePolicy(channels="none", combine="sum")
    assert merge_problems([(4, 5, 5), (4, 3, 3)], policy) == []
    xs = [torch.ones(1, 4, 5, 5), torch.ones(1, 4, 3, 3)]
    assert Merge([(4, 5, 5), (4, 3, 3)], policy)(xs).shape == (1, 4, 3, 3)
    problems = merge_problems([(8, 5, 5), (4, 5, 5)], policy)
    assert problems and "channels='none' cannot sum" in problems[0]
    with pytest.raises(ValueError):
        Merge([(8, 5, 5), (4, 5, 5)], policy)


def test_channels_none_sum_in_a_space_is_invalid_not_a_crash() -> None:
    space = GlobalSpace(merge_policy={"channels": "none", "combine": "sum"})
    genome = split_edge(space.initial(), "in", "out", "conv3N")
    genome = toggle_edge(genome, "in", "out")  # out = in (1 channel) + conv3N (8 channels)
    reasons = space.validate_for(genome, (1, 12, 12), 10, 8)
    assert reasons and reasons[0].startswith("merge into out:")
    assert space.validate(genome) == []  # shape-free check cannot know
    with pytest.raises(GenomeError, match="cannot sum"):
        space.build(genome, (1, 12, 12), 10, 8)
    with pytest.raises(GenomeError):
        space.count_params(genome, (1, 12, 12), 10, 8)
    same_width = split_edge(space.initial(), "in", "out", "conv3N")
    node = same_width.nodes[0].id
    same_width = split_edge(toggle_edge(split_edge(same_width, node, "out", "conv5N"), node, "out"),
                            node, "out", "avgpool2")
    assert space.validate_for(same_width, (1, 12, 12), 10, 8) == []
    assert space.build(same_width, (1, 12, 12), 10, 8)(torch.randn(2, 1, 12, 12)).shape == (2, 10)


def test_custom_policy_round_trips_through_settings() -> None:
    policy = MergePolicy(spatial="pad", spatial_target="smallest", channels="conv1x1",
                         channel_target="largest", combine="concat")
    space = GlobalSpace(merge_policy=policy, head="remnet")
    settings = space.settings()
    assert settings["merge_policy"] == policy.to_dict()
    again = get_space("global", **settings)
    assert again.merge_policy == policy
    named = GlobalSpace(merge_policy="pad-largest-sum").settings()
    assert named["merge_policy"] == "pad-largest-sum"
    rng = random.Random(1)
    for _ in range(20):
        genome = space.sample(rng)
        for _ in range(4):
            genome = space.mutate(genome, rng)
        model = space.build(genome, (3, 16, 16), 5, 6)
        assert space.count_params(genome, (3, 16, 16), 5, 6) == numel(model)
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_bad_policies_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        MergePolicy(spatial="bilinear")
    with pytest.raises(ConfigError):
        MergePolicy(combine="max")
    with pytest.raises(ConfigError):
        get_merge_policy({"spatial": "pad", "mode": "x"})
    with pytest.raises(ConfigError):
        get_merge_policy("nope")
    assert get_merge_policy({"combine": "concat"}) == MergePolicy(combine="concat")
