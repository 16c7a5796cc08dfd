from __future__ import annotations

import pytest
import torch

from nasforge.data import AUGMENT_MODES, augment_batch, random_erasing, random_horizontal_flip
from nasforge.errors import ConfigError


def _batch(n: int = 64, c: int = 3, h: int = 16, w: int = 12, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 + 0.9 * torch.rand(n, c, h, w, generator=gen)  # never 0: erasing is visible


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_flips_exactly_the_chosen_samples() -> None:
    x = _batch()
    out = random_horizontal_flip(x, _gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    assert torch.all(flipped ^ kept)  # each sample either mirrored or unchanged
    expected = torch.rand(len(x), generator=_gen(1)) < 0.5  # the draw the flip makes
    assert torch.equal(flipped, expected)
    assert 0 < int(flipped.sum()) < len(x)
    assert torch.equal(random_horizontal_flip(x, _gen(1), p=0.0), x)
    assert torch.equal(random_horizontal_flip(x, _gen(1), p=1.0), x.flip(-1))


def _erased_rectangles(
    x: torch.Tensor, out: torch.Tensor
) -> list[tuple[int, int, int, int] | None]:
    """Per sample, the bounding box (top, left, h, w) of what changed, checked to be a full
    rectangle across all channels set to 0."""
    boxes: list[tuple[int, int, int, int] | None] = []
    for i in range(len(x)):
        changed = out[i] != x[i]
        if not changed.any():
            boxes.append(None)
            continue
        assert torch.all(out[i][changed] == 0.0)
        plane = changed.any(0)
        assert torch.equal(changed, plane.expand_as(changed))  # every channel erased alike
        rows = torch.nonzero(plane.any(1)).reshape(-1)
        cols = torch.nonzero(plane.any(0)).reshape(-1)
        top, left = int(rows[0]), int(cols[0])
        h, w = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
        assert int(plane.sum()) == h * w  # solid rectangle
        boxes.append((top, left, h, w))
    return boxes


@pytest.mark.parametrize("shape", [(16, 12), (28, 28), (5, 7)])
def test_erasing_sets_value_only_inside_rectangles_of_allowed_area(shape: tuple[int, int]) -> None:
    h, w = shape
    x = _batch(n=200, h=h, w=w)
    scale = (0.02, 0.33)
    out = random_erasing(x, _gen(3), p=0.5, scale=scale)
    assert out.shape == x.shape
    boxes = _erased_rectangles(x, out)
    erased = [b for b in boxes if b is not None]
    if h * w >= 100:
        assert 60 < len(erased) < 140  # about half the samples
    for _, _, bh, bw in erased:
        assert scale[0] <= bh * bw / (h * w) <= scale[1]
        assert bh < h and bw < w


def test_erasing_p_and_value() -> None:
    x = _batch(n=32)
    assert torch.equal(random_erasing(x, _gen(0), p=0.0), x)
    out = random_erasing(x, _gen(0), p=1.0, value=0.0)
    assert all(b is not None for b in _erased_rectangles(x, out))
    filled = random_erasing(x, _gen(0), p=1.0, value=7.0)
    assert torch.equal(filled == 7.0, out == 0.0)  # same rectangles, other value


def test_same_seed_same_output_other_seed_other_output() -> None:
    x = _batch()
    for mode in AUGMENT_MODES:
        a = augment_batch(x, mode, _gen(11))
        b = augment_batch(x, mode, _gen(11))
        assert torch.equal(a, b)
        assert a.shape == x.shape
    one = augment_batch(x, "flip+erase", _gen(11))
    assert not torch.equal(one, augment_batch(x, "flip+erase", _gen(12)))


def test_modes() -> None:
    x = _batch()
    assert augment_batch(x, "none", _gen(0)) is x
    assert torch.equal(augment_batch(x, "flip", _gen(5)), random_horizontal_flip(x, _gen(5)))
    g = _gen(5)
    expected = random_erasing(random_horizontal_flip(x, g), g)
    assert torch.equal(augment_batch(x, "flip+erase", _gen(5)), expected)
    with pytest.raises(ConfigError, match=r"unknown augmentation 'rotate'.*flip\+erase"):
        augment_batch(x, "rotate", _gen(0))


def test_input_not_modified_and_uint8_works() -> None:
    x = _batch()
    before = x.clone()
    augment_batch(x, "flip+erase", _gen(2))
    assert torch.equal(x, before)
    u = (x * 255).to(torch.uint8)
    out = augment_batch(u, "flip+erase", _gen(2))
    assert out.dtype == torch.uint8 and out.shape == u.shape
    with pytest.raises(ValueError):
        random_horizontal_flip(x[0], _gen(0))


def test_cutout_zeroes_one_clipped_square_per_image() -> None:
    from nasforge.data import cutout

    x = torch.ones(64, 2, 12, 10)
    out = cutout(x, _gen(3), length=4)
    assert torch.equal(x, torch.ones(64, 2, 12, 10))  # input untouched
    zero = out[:, 0] == 0
    assert torch.equal(zero, out[:, 1] == 0)  # all channels alike
    counts = zero.flatten(1).sum(1)
    assert int(counts.max()) == 16 and int(counts.min()) >= 4  # 4x4, less where clipped
    for img in zero:  # one axis-aligned rectangle: rows x cols of the zeroed cells
        rows, cols = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
        assert int(img.sum()) == len(rows) * len(cols) and len(rows) <= 4 and len(cols) <= 4
    assert bool((counts < 16).any())  # some squares were clipped at a border
    assert torch.equal(out, cutout(x, _gen(3), length=4))
    g = _gen(5)
    assert torch.equal(augment_batch(x, "flip+cutout", _gen(5)),
                       cutout(random_horizontal_flip(x, g), g))
    assert {"cutout", "flip+cutout"} <= set(AUGMENT_MODES)
    with pytest.raises(ValueError, match="length"):
        cutout(x, _gen(0), length=0)
