import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from ram_lightning import Retina
from ram_lightning.bench import LoopRetina, bench
from ram_lightning.config import CONF_DIR
from ram_lightning.errors import ConfigError

TINY = [
    "quick=true",
    "retina_batches=[4]",
    "batches=[4]",
    "experiments=[mnist]",
    "cores=[rnn]",
    "loop_experiments=[mnist]",
    "loop_batch=4",
    "canvas_batch=4",
]


def test_quick_bench_writes_every_section_with_positive_numbers(tmp_path) -> None:
    out = tmp_path / "bench.json"
    out.write_text("an earlier run")  # must survive: the bench never overwrites
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, f"out={out}"])
    result = bench(cfg)
    assert out.read_text() == "an earlier run"
    written = json.loads((tmp_path / "bench_1.json").read_text())
    assert result["path"] == str(tmp_path / "bench_1.json")
    assert {"machine", "matmul_gflops_per_s", "flops_per_image", "retina", "train", "loop", "canvas", "options"} <= set(
        written
    )
    assert written["matmul_gflops_per_s"] > 0 and written["peak_mem_mb"] > 0
    assert len(written["load_start"]) == 3
    assert written["flops_per_image"][0]["total"] > written["flops_per_image"][0]["retina"] > 0
    assert len(written["retina"]) == 3 and all(r["calls_per_s"] > 0 for r in written["retina"])
    (train,) = written["train"]
    assert train["images_per_s"] > 0 and train["fraction_of_peak"] > 0
    (loop,) = written["loop"]
    assert loop["vectorised_images_per_s"] > 0 and loop["loop_images_per_s"] > 0 and loop["ratio"] > 0
    assert [c["canvas"] for c in written["canvas"]] == ["translated60", "cluttered60", "cluttered100"]
    assert all(c["images_per_s"] > 0 for c in written["canvas"])
    assert {o["variant"] for o in written["options"]} == {"eager", "fused_adam"}
    assert 0 < written["profile"]["matmul_share"] < 1 and written["profile"]["top"]


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("C", [1, 3])
def test_loop_retina_matches_retina_on_lattice_points(k: int, C: int) -> None:
    """The per-sample reference reads the same pixels as Retina, so the speed comparison is like for like."""
    gen = torch.Generator().manual_seed(k * 10 + C)
    B, g, H, W = 12, 4, 16, 32
    images = torch.rand(B, C, H, W, generator=gen)
    # whole-pixel centres anywhere on the image (a policy's locations are clipped to [-1, 1])
    cx = torch.randint(0, W + 1, (B,), generator=gen).float()
    cy = torch.randint(0, H + 1, (B,), generator=gen).float()
    l = torch.stack([cx / W * 2 - 1, cy / H * 2 - 1], 1)
    l[0] = torch.tensor([-1.0, -1.0])
    l[1] = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(LoopRetina(g, k)(images, l), Retina(g, k)(images, l))


def test_unknown_clock_is_a_config_error(tmp_path) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, "clock=sundial", f"out={tmp_path / 'b.json'}"])
    with pytest.raises(ConfigError, match="clock"):
        bench(cfg)
    assert not (tmp_path / "b.json").exists()
