import math

import pytest
import torch
from torch.nn import functional as F

from ram_lightning import Retina


def naive_retina(images: torch.Tensor, l: torch.Tensor, g: int, k: int) -> torch.Tensor:
    """The contract, one sample and one scale at a time."""
    B, C, H, W = images.shape
    out = torch.zeros(B, k, C, g, g, dtype=images.dtype)
    for b in range(B):
        cx = (l[b, 0].item() + 1) / 2 * W
        cy = (l[b, 1].item() + 1) / 2 * H
        for i in range(k):
            s = g * 2**i
            top, left = math.floor(cy - s / 2), math.floor(cx - s / 2)
            square = torch.zeros(C, s, s, dtype=images.dtype)
            for r in range(s):
                for c in range(s):
                    if 0 <= top + r < H and 0 <= left + c < W:
                        square[:, r, c] = images[b, :, top + r, left + c]
            out[b, i] = F.avg_pool2d(square.unsqueeze(0), 2**i).squeeze(0)
    return out


def lattice_locations(B: int, H: int, W: int, margin: int, gen: torch.Generator) -> torch.Tensor:
    """Centres on whole pixels (so floor and round agree), from far outside the image to far inside."""
    cx = torch.randint(-margin, W + margin + 1, (B,), generator=gen).float()
    cy = torch.randint(-margin, H + margin + 1, (B,), generator=gen).float()
    return torch.stack([cx / W * 2 - 1, cy / H * 2 - 1], 1)  # exact in float: H, W are powers of two


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("C", [1, 3])
def test_retina_matches_naive_loop(k: int, C: int) -> None:
    gen = torch.Generator().manual_seed(k * 10 + C)
    g, H, W = 4, 16, 32  # H != W
    images = torch.rand(16, C, H, W, generator=gen)
    l = lattice_locations(16, H, W, margin=g * 2**k, gen=gen)
    l[0] = torch.tensor([-1.0, -1.0])  # corner: partly outside
    l[1] = torch.tensor([4.0, 4.0])  # wholly outside
    got = Retina(g, k)(images, l)
    assert got.shape == (16, k, C, g, g)
    torch.testing.assert_close(got, naive_retina(images, l, g, k))
    assert got[1].abs().sum() == 0


def test_retina_centre_crop_is_exact() -> None:
    images = torch.arange(64.0).view(1, 1, 8, 8)
    patch = Retina(4, 2)(images, torch.zeros(1, 2))
    torch.testing.assert_close(patch[0, 0, 0], images[0, 0, 2:6, 2:6])
    torch.testing.assert_close(patch[0, 1, 0], F.avg_pool2d(images, 2)[0, 0])


def test_retina_bfloat16_and_no_parameters() -> None:
    retina = Retina(8, 3)
    assert list(retina.parameters()) == []
    images = torch.rand(4, 1, 60, 60)
    l = torch.rand(4, 2) * 2 - 1
    out = retina(images.bfloat16(), l)
    assert out.dtype == torch.bfloat16 and out.shape == (4, 3, 1, 8, 8)
    torch.testing.assert_close(out.float(), retina(images, l), atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_retina_cuda_matches_cpu() -> None:
    images, l = torch.rand(32, 3, 60, 44), torch.rand(32, 2) * 2 - 1
    torch.testing.assert_close(Retina(12, 3).cuda()(images.cuda(), l.cuda()).cpu(), Retina(12, 3)(images, l))


def test_retina_on_images_wider_than_its_index_buffer_keeps_its_buffers() -> None:
    gen = torch.Generator().manual_seed(7)
    retina = Retina(4, 2)
    shapes = {name: b.shape for name, b in retina.named_buffers()}
    images = torch.rand(8, 1, 32, 256, generator=gen)  # W beyond the 128 pixel indices kept as a buffer
    l = lattice_locations(8, 32, 256, margin=8, gen=gen)
    torch.testing.assert_close(retina(images, l), naive_retina(images, l, 4, 2))
    # Copies of the net made before (the averaged weights') must still line up buffer for buffer.
    assert {name: b.shape for name, b in retina.named_buffers()} == shapes
