"""Training-image jitter: identity at zero, the drawn ranges, the elastic warp, reproducible draws."""

import torch

from ram_lightning.data.augment import elastic_field, jitter
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


def test_elastic_field_is_smooth_and_scales_with_alpha():
    f = elastic_field(64, 28, 34.0, 4.0, generator_for("cpu", 4))  # (B, S, S, 2) pixels
    assert f.shape == (64, 28, 28, 2)
    inner = f[:, 8:20, 8:20]  # away from the zero padding of the smoothing
    assert 0.5 < inner.abs().mean() < 2.0  # about a pixel, as Simard et al.'s alpha 34, sigma 4 give
    step = (inner[:, 1:] - inner[:, :-1]).abs().mean()  # neighbours move nearly alike
    assert step < 0.2 * inner.abs().mean()
    g = elastic_field(64, 28, 17.0, 4.0, generator_for("cpu", 4))
    assert torch.allclose(g * 2, f)  # the same draw, half the strength


def test_elastic_warp_moves_strokes_but_keeps_the_ink():
    x = block(200, side=12)
    out = jitter(x, 0, 0, generator_for("cpu", 5), elastic=34.0)
    assert out.shape == x.shape and out.dtype == torch.uint8
    changed = (out != x).flatten(1).any(1)
    assert changed.all()  # every image is warped
    mass = out.float().sum((1, 2)) / x.float().sum((1, 2))
    assert (mass.mean() - 1).abs() < 0.05  # it stretches some blocks and squeezes others, adds no ink on average
    grid = torch.arange(28.0)
    row = (out.float().sum(2) * grid).sum(1) / out.float().sum((1, 2))  # (B,) centre of ink, rows
    assert (row - 13.5).abs().max() < 3  # the strokes move by pixels; the image stays where it was
    assert torch.equal(out, jitter(x, 0, 0, generator_for("cpu", 5), elastic=34.0))


def test_elastic_keeps_the_turn_and_zoom_draws():
    x = block(50)
    plain = jitter(x, 20, 0.2, generator_for("cpu", 6))
    slight = jitter(x, 20, 0.2, generator_for("cpu", 6), elastic=1e-6)  # warp too small to move a pixel
    assert torch.equal(plain, slight)
