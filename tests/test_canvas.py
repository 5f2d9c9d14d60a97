"""Batched translated and cluttered canvases: sizes, exact pixel mass, where distractors come from."""

import pytest
import torch

from ram_lightning.data.canvas import clutter, make_canvases, translate
from ram_lightning.seeding import generator_for


def digits_with_marker(B: int, value: int = 1) -> torch.Tensor:
    d = torch.zeros(B, 28, 28, dtype=torch.uint8)
    d[:, 13, 17] = value  # one marked pixel: its position in the canvas shows where the digit went
    return d


def test_translate_shape_and_exact_mass():
    g = generator_for("cpu", 0)
    digits = torch.randint(0, 256, (64, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    out = translate(digits, 60, g).canvases
    assert out.shape == (64, 60, 60) and out.dtype == torch.uint8
    assert torch.equal(out.long().sum((1, 2)), digits.long().sum((1, 2)))  # nothing cut off, nothing added


def test_translate_places_whole_digit_uniformly_inside():
    B, S = 3000, 31  # 4 possible corners per axis
    out = translate(torch.full((B, 28, 28), 255, dtype=torch.uint8), S, generator_for("cpu", 1)).canvases
    assert torch.all((out > 0).sum((1, 2)) == 28 * 28)  # the full 28x28 block every time
    top = (out.amax(2) > 0).float().argmax(1)  # first non-zero row per canvas
    left = (out.amax(1) > 0).float().argmax(1)
    for corner in (top, left):
        counts = torch.bincount(corner, minlength=S - 28 + 1)
        assert len(counts) == S - 28 + 1 and counts.min() > B / 4 * 0.8  # every position, about equally


def test_clutter_adds_num_distractors_crops_of_the_right_size():
    B, K, s = 50, 5, 6
    pool = torch.full((20, 28, 28), 3, dtype=torch.uint8)  # any crop of any pool digit is constant 3
    out = clutter(digits_with_marker(B, value=1), pool, 60, K, s, generator_for("cpu", 2)).canvases
    assert out.shape == (B, 60, 60)
    # no clipping at these values: every canvas holds exactly K crops of s*s pixels of 3, plus the marker
    assert torch.all(out.long().sum((1, 2)) == K * s * s * 3 + 1)
    assert torch.all((out.long() % 3 == 1).sum((1, 2)) == 1)  # the target is there, once


def test_clutter_crops_come_from_the_pool_given():
    pool_a = torch.full((10, 28, 28), 5, dtype=torch.uint8)
    out = clutter(digits_with_marker(40, value=0), pool_a, 60, 4, 8, generator_for("cpu", 3)).canvases
    assert set(out.unique().tolist()) <= {0, 5, 10, 15, 20}  # only sums of pool values


def test_clutter_picks_every_pool_digit():
    pool = torch.arange(1, 11, dtype=torch.uint8).view(10, 1, 1).repeat(1, 28, 28)  # digit i is constant i+1
    out = clutter(digits_with_marker(400, value=0), pool, 60, 1, 8, generator_for("cpu", 4)).canvases
    assert set(out.flatten(1).amax(1).tolist()) == set(range(1, 11))


@pytest.mark.parametrize("axis", [1, 2])
def test_clutter_cuts_crops_at_every_place(axis):
    s = 3
    coords = torch.arange(28, dtype=torch.uint8) + 1
    pool = (coords.view(28, 1) if axis == 1 else coords.view(1, 28)).expand(28, 28)[None].clone()  # row or column code
    out = clutter(digits_with_marker(1000, value=0), pool, 40, 1, s, generator_for("cpu", 5)).canvases
    first = out.flatten(1).float().masked_fill(out.flatten(1) == 0, 999).amin(1) - 1  # where the crop was cut
    assert set(first.long().tolist()) == set(range(28 - s + 1))


def test_clutter_under_the_digit_stays_visible_and_clips_at_255():
    B = 20
    digits = torch.full((B, 28, 28), 200, dtype=torch.uint8)
    pool = torch.full((5, 28, 28), 100, dtype=torch.uint8)
    out = clutter(digits, pool, 30, 16, 8, generator_for("cpu", 6)).canvases  # 30x30: distractors must overlap it
    assert out.max() == 255  # 200 + 100 clipped, not wrapped around
    assert torch.all((out == 255).flatten(1).any(1))  # in every canvas clutter shows through the digit


def test_float_view_is_in_unit_range():
    out = clutter(
        digits_with_marker(8, 255),
        torch.full((3, 28, 28), 250, dtype=torch.uint8),
        40,
        6,
        8,
        generator_for("cpu", 6),
    ).canvases
    x = out.float() / 255
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() == 1


def test_same_keys_same_canvases_different_keys_different():
    digits = torch.randint(0, 256, (16, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pool = digits.clone()

    def make(*keys):
        return make_canvases(digits, "cluttered", 60, pool, 4, 8, generator_for("cpu", *keys)).canvases

    assert torch.equal(make(1, 2), make(1, 2))
    assert not torch.equal(make(1, 2), make(1, 3))


def test_plain_is_the_identity_and_unknown_variant_fails():
    d = digits_with_marker(2)
    assert make_canvases(d, "plain", 60, None, 0, 8, generator_for("cpu", 0)).canvases is d
    with pytest.raises(ValueError, match="rotated"):
        make_canvases(d, "rotated", 60, None, 0, 8, generator_for("cpu", 0))
