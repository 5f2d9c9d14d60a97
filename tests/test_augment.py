"""Training-image jitter: identity at zero, the drawn ranges, reproducible draws, any channel count."""

import torch

from ram_lightning.data.augment import jitter
from ram_lightning.seeding import generator_for


def block(B: int, side: int = 10, channels: tuple[int, ...] = ()) -> torch.Tensor:
    """B white squares of ``side`` pixels centred on black 28x28 images."""
    x = torch.zeros(B, *channels, 28, 28, dtype=torch.uint8)
    lo = (28 - side) // 2
    x[..., lo : lo + side, lo : lo + side] = 255
    return x


def test_zero_jitter_keeps_every_pixel():
    x = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(jitter(x, 0, 0, generator_for("cpu", 1)), x)


def test_scale_resizes_within_the_range_and_reaches_both_ends():
    x, s = block(400), 0.3
    ratio = jitter(x, 0, s, generator_for("cpu", 2)).float().sum((1, 2)) / x.float().sum((1, 2))  # area ratio
    assert ratio.min() > (1 - s) ** 2 * 0.9 and ratio.max() < (1 + s) ** 2 * 1.1
    assert ratio.min() < 0.7 and ratio.max() > 1.4  # smaller and larger ones both drawn


def test_rotation_turns_without_resizing():
    bar = torch.zeros(200, 28, 28, dtype=torch.uint8)
    bar[:, 13:15, 4:24] = 255  # a horizontal bar through the centre
    out = jitter(bar, 45, 0, generator_for("cpu", 3))
    mass = out.float().sum((1, 2)) / bar.float().sum((1, 2))
    assert (mass - 1).abs().max() < 0.1  # a turn about the centre keeps the ink
    rows = (out > 64).any(2).sum(1)  # rows the bar covers: 2 when level, up to about 16 at 45 degrees
    assert rows.min() <= 3 and rows.max() >= 12


def test_draws_follow_the_generator_and_keep_shape():
    x = block(8, channels=(3,))
    a = jitter(x, 15, 0.15, generator_for("cpu", "k"))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, jitter(x, 15, 0.15, generator_for("cpu", "k")))
    assert not torch.equal(a, jitter(x, 15, 0.15, generator_for("cpu", "other")))
    assert torch.equal(a[:, 0], a[:, 2])  # every channel of an image gets the same change
