"""Frames, GIFs, the render command and the TensorBoard callback: CPU only, tiny models, made-up data."""

import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_cfg, run_cli
from ram_lightning import RAMLitModule, RecurrentAttention, Retina
from ram_lightning.config import CONF_DIR
from ram_lightning.errors import CheckpointError, ConfigError
from ram_lightning.paths import fresh_paths
from ram_lightning.render import main as render_main
from ram_lightning.render import render
from ram_lightning.train import train
from ram_lightning.viz import GlimpseImages, frame_duration_ms, frame_layout, glimpse_frames, scale_squares, write_gif
from ram_lightning.viz.frames import SCALE_COLOURS, square_sides

TINY = dict(patch_size=4, num_scales=3, num_glimpses=3, hidden_g=16, hidden_l=8, glimpse_dim=32, hidden=32)
RECIPE = {"dataset": "mnist", "variant": "translated", "canvas": 32, "val_size": 40, "seed": 1}


def pixel_location(cx: float, cy: float, H: int, W: int) -> torch.Tensor:
    """(x, y) in [-1, 1] whose retina centre is the pixel point (cx, cy)."""
    return torch.tensor([cx / W * 2 - 1, cy / H * 2 - 1])


def frames_for(image: torch.Tensor, l: torch.Tensor, g: int, k: int, zoom: int | None = None):
    retina = Retina(g, k)
    patches = retina(image[None], l[None])[0]  # (k, C, g, g)
    probs = torch.full((10,), 0.1)
    return glimpse_frames(image, l[None], patches[None], probs, square_sides(g, k), label=2, zoom=zoom), patches


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize("zoom", [1, 3, 8])
def test_squares_lie_exactly_on_the_retina_contract(zoom: int) -> None:
    H, W, g, k = 32, 40, 4, 3
    l = pixel_location(18, 14, H, W)  # c - s/2 whole for every scale
    frames, _ = frames_for(torch.zeros(1, H, W), l, g, k, zoom)
    layout = frame_layout((1, H, W), g, k, zoom)
    px = np.asarray(frames[0]).astype(int)  # (height, width, 3)
    x0, y0 = layout.canvas_xy
    for i, (top, left, s) in enumerate(scale_squares(l, H, W, square_sides(g, k))):
        assert (top, left) == (14 - s // 2, 18 - s // 2)  # the contract's floor(c - s/2)
        colour = np.array(SCALE_COLOURS[i])
        r0, r1 = y0 + top * zoom, y0 + (top + s) * zoom - 1  # the square's outer rows and columns, upscaled
        c0, c1 = x0 + left * zoom, x0 + (left + s) * zoom - 1
        for ring in (px[r0, c0 : c1 + 1], px[r1, c0 : c1 + 1], px[r0 : r1 + 1, c0], px[r0 : r1 + 1, c1]):
            assert (ring == colour).all(), f"scale {i}"
        # one frame pixel further out is canvas (black), not the square's colour
        for outside in (px[r0 - 1, c0 + 1], px[r1 + 1, c0 + 1], px[r0 + 1, c0 - 1], px[r0 + 1, c1 + 1]):
            assert not (outside == colour).all(), f"scale {i}"


def test_scale_squares_match_what_the_retina_reads() -> None:
    gen = torch.Generator().manual_seed(0)
    H, W, g, k, pad = 24, 20, 3, 3, 30
    image = torch.arange(H * W, dtype=torch.float32).view(1, H, W)  # every pixel different
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))  # off-image pixels read as zero
    retina = Retina(g, k)
    for l in torch.rand(50, 2, generator=gen) * 2.4 - 1.2:  # off-lattice points, some outside the image
        seen = retina(image[None], l[None])[0]  # (k, 1, g, g)
        for i, (top, left, s) in enumerate(scale_squares(l, H, W, square_sides(g, k))):
            crop = padded[:, top + pad : top + pad + s, left + pad : left + pad + s]  # (1, s, s)
            torch.testing.assert_close(seen[i], torch.nn.functional.avg_pool2d(crop, 2**i))


@pytest.mark.parametrize("C", [1, 3])
def test_patch_panel_is_the_retina_output_enlarged(C: int) -> None:
    H, W, g, k = 30, 30, 5, 2
    image = torch.rand(C, H, W, generator=torch.Generator().manual_seed(C))
    frames, patches = frames_for(image, torch.tensor([0.13, -0.41]), g, k)
    layout = frame_layout((C, H, W), g, k)
    px = np.asarray(frames[0]).astype(np.float32) / 255  # (height, width, 3)
    pz = layout.patch_zoom
    for i, (x, y) in enumerate(layout.patch_xy):
        shown = torch.from_numpy(px[y : y + g * pz, x : x + g * pz]).permute(2, 0, 1)  # (3, g*pz, g*pz)
        want = patches[i].repeat_interleave(pz, 1).repeat_interleave(pz, 2).expand(3, -1, -1)
        torch.testing.assert_close(shown, want, atol=0.5 / 255 + 1e-6, rtol=0)


def test_one_frame_per_glimpse_and_a_final_one() -> None:
    net = RecurrentAttention((1, 20, 20), **TINY)
    x = torch.rand(1, 1, 20, 20)
    out = net(x, return_patches=True)
    probs = out.logits.softmax(-1)[0]
    sides = square_sides(TINY["patch_size"], TINY["num_scales"])
    frames = glimpse_frames(x[0], out.locations[0], out.patches[0], probs, sides, label=1)
    compact = glimpse_frames(x[0], out.locations[0], None, probs, sides, compact=True)
    assert len(frames) == len(compact) == TINY["num_glimpses"] + 1
    assert len({f.size for f in frames}) == 1 and len({f.tobytes() for f in frames}) == len(frames)


# ----------------------------------------------------------------------------- GIFs


@pytest.mark.parametrize("fps, ms", [(2, 500), (4, 250), (3, 330), (0.5, 2000), (10, 100), (1000, 10)])
def test_fps_to_frame_duration(fps: float, ms: int) -> None:
    assert frame_duration_ms(fps) == ms


@pytest.mark.parametrize("fps", [0, -1])
def test_fps_must_be_positive(fps: float) -> None:
    with pytest.raises(ValueError, match="fps"):
        frame_duration_ms(fps)


@pytest.mark.parametrize("fps", [2, 3, 0.5])
def test_gif_reads_back_with_every_frame_and_the_duration(tmp_path: Path, fps: float) -> None:
    frames, _ = frames_for(torch.rand(1, 16, 16), torch.tensor([0.2, 0.1]), 4, 2)
    frames = frames * 3  # 6 frames; consecutive ones differ
    path = write_gif(frames, tmp_path / "a.gif", fps)
    with Image.open(path) as im:
        assert im.n_frames == len(frames)
        durations = []
        for j in range(im.n_frames):
            im.seek(j)
            durations.append(im.info["duration"])
        assert im.info.get("loop") == 0
    assert durations == [frame_duration_ms(fps)] * len(frames)
    with pytest.raises(FileExistsError):
        write_gif(frames, path, fps)


def test_fresh_paths_share_one_new_suffix(tmp_path: Path) -> None:
    (tmp_path / "b_1.png").touch()
    (tmp_path / "a.gif").touch()
    assert fresh_paths(tmp_path, ["a.gif", "b.png"]) == [tmp_path / "a_2.gif", tmp_path / "b_2.png"]


# ----------------------------------------------------------------------------- the render command


def fit_tiny(lit: RAMLitModule, in_shape: tuple[int, int, int], **trainer_kwargs) -> pl.Trainer:
    x, y = torch.rand(16, *in_shape), torch.randint(0, lit.hparams.num_classes, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(
        accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        **{"max_steps": 2, "logger": False, **trainer_kwargs},
    )  # fmt: skip
    trainer.fit(lit, loader, loader)
    return trainer


@pytest.fixture
def ram_ckpt(tmp_path: Path) -> Path:
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 32, 32), mc_eval=2, recipe=RECIPE)
    trainer = fit_tiny(lit, (1, 32, 32))
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


def render_cfg(ckpt: Path, data_dir: Path, *overrides: str):
    return compose_cfg("render", [f"ckpt_path={ckpt}", f"data_dir={data_dir}", "n=3", *overrides])


def test_render_writes_gifs_grid_and_strip_and_never_overwrites(ram_ckpt: Path, tiny_mnist: Path, tmp_path) -> None:
    out = tmp_path / "frames"
    first = render(render_cfg(ram_ckpt, tiny_mnist, f"out={out}", "fps=4"))
    T = TINY["num_glimpses"]
    assert first["frames"] == T + 1 and len(first["samples"]) == 3
    for path in [*first["samples"], first["grid_gif"]]:
        with Image.open(path) as im:
            assert im.n_frames == T + 1 and im.info["duration"] == 250
    assert Path(first["grid_gif"]).name == "grid.gif" and Path(first["grid_png"]).name == "grid.png"
    assert all(Path(p).name.startswith(f"sample_{i}_") for i, p in enumerate(first["samples"]))
    with Image.open(first["grid_png"]) as im:
        assert im.size[0] > im.size[1]  # three rows of T + 1 frames
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}

    second = render(render_cfg(ram_ckpt, tiny_mnist, f"out={out}"))
    assert {p: p.stat().st_mtime_ns for p in before} == before  # untouched
    assert Path(second["grid_gif"]).name == "grid_1.gif"
    assert len(list(out.iterdir())) == 2 * len(before)


def test_render_default_out_is_a_new_folder_in_the_run(ram_ckpt: Path, tiny_mnist: Path) -> None:
    result = render(render_cfg(ram_ckpt, tiny_mnist, "deterministic=false"))
    out_dir = Path(result["out_dir"])
    assert out_dir.parent == ram_ckpt.parent.parent and out_dir.name.startswith("render_")


def test_render_data_override_and_missing_recipe(tmp_path: Path, tiny_mnist: Path) -> None:
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 28, 28))  # made by hand: no recipe
    path = tmp_path / "hand.ckpt"
    fit_tiny(lit, (1, 28, 28)).save_checkpoint(path)
    with pytest.raises(ConfigError, match="no data recipe"):
        render(render_cfg(path, tiny_mnist, f"out={tmp_path / 'r'}"))
    result = render(render_cfg(path, tiny_mnist, f"out={tmp_path / 'r'}", "+data.dataset=mnist", "+data.val_size=40"))
    assert len(result["samples"]) == 3
    with pytest.raises(ConfigError, match="data.canvs is not a data setting"):
        render(render_cfg(path, tiny_mnist, "+data.dataset=mnist", "+data.canvs=32"))
    with pytest.raises(ConfigError, match="shape"):  # a 32x32 canvas for a 28x28 model
        render(render_cfg(path, tiny_mnist, "data=translated60", "data.canvas=32", "data.val_size=40"))


def test_render_refuses_bad_values(ram_ckpt: Path, tiny_mnist: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="ckpt_path is required"):
        render(compose_cfg("render", []))
    with pytest.raises(CheckpointError, match="not found"):
        render(render_cfg(tmp_path / "nope.ckpt", tiny_mnist))
    for bad in ("n=0", "fps=0", "fps=abc"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            render(render_cfg(ram_ckpt, tiny_mnist, bad))
    lit = RAMLitModule({"kind": "fc"}, (1, 32, 32), recipe=RECIPE)
    fit_tiny(lit, (1, 32, 32)).save_checkpoint(tmp_path / "fc.ckpt")
    with pytest.raises(CheckpointError, match="RAM checkpoint"):
        render(render_cfg(tmp_path / "fc.ckpt", tiny_mnist))


@pytest.mark.slow  # a fresh interpreter: imports dominate
def test_render_command_line_on_an_image_folder(shapes_folder: Path, tmp_path: Path) -> None:
    # the data recipe of an image folder does not record where the folder is: data.root names it
    recipe = {"dataset": "image_folder", "variant": "plain", "channels": 1, "image_size": 20, "seed": 0}
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 20, 20), num_classes=2, recipe=recipe)
    ckpt = tmp_path / "folder.ckpt"
    fit_tiny(lit, (1, 20, 20)).save_checkpoint(ckpt)
    done = run_cli("render", f"ckpt_path={ckpt}", f"+data.root={shapes_folder}", "n=2", "out=r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "grid.gif").is_file() and "wrote 2 GIFs" in done.stdout


def test_render_main_reports_a_missing_checkpoint(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["render", "n=2"])
    with pytest.raises(SystemExit) as exit_info:
        render_main()
    assert exit_info.value.code == 2 and "ckpt_path is required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the callback


def test_callback_logs_the_same_images_every_n_epochs(tmp_path: Path) -> None:
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 20, 20), mc_eval=1)
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    logged = []
    callback = GlimpseImages(every_n_epochs=2, n=3)
    real = logger.experiment
    real.add_images = lambda tag, imgs, step, dataformats: logged.append((tag, imgs.shape, step))
    real.add_image = lambda tag, img, step, dataformats: logged.append((tag, img.shape, step))
    fit_tiny(lit, (1, 20, 20), max_steps=-1, max_epochs=4, logger=logger, callbacks=[callback])
    first_x = callback.x.clone()
    assert first_x.shape == (3, 1, 20, 20)
    steps = sorted({step for _, _, step in logged})
    assert len(steps) == 2  # epochs 2 and 4 of 4
    tags = {tag for tag, _, _ in logged}
    assert tags == {"glimpses/overview", "glimpses/0", "glimpses/1", "glimpses/2"}
    n_frames = {shape[0] for tag, shape, _ in logged if tag != "glimpses/overview"}
    assert n_frames == {TINY["num_glimpses"] + 1}
    torch.testing.assert_close(callback.x, first_x)


def test_callback_is_a_no_op_without_tensorboard_or_glimpses(tmp_path: Path) -> None:
    for net, logger in [({"kind": "ram", **TINY}, False), ({"kind": "fc"}, TensorBoardLogger(tmp_path))]:
        lit = RAMLitModule(net, (1, 20, 20), mc_eval=1)
        fit_tiny(lit, (1, 20, 20), max_steps=-1, max_epochs=1, logger=logger, callbacks=[GlimpseImages(1, 2)])
    with pytest.raises(ConfigError, match="every_n_epochs"):
        GlimpseImages(every_n_epochs=0)


def test_training_with_the_shipped_callback_config_logs_glimpses(train_cfg) -> None:
    cfg = train_cfg("test=false")  # the fixture leaves the callback out; put the shipped file back in
    shipped = OmegaConf.load(Path(CONF_DIR) / "callbacks" / "glimpse_images.yaml")
    with open_dict(cfg):
        cfg.callbacks.glimpse_images = shipped.glimpse_images
        cfg.callbacks.glimpse_images.every_n_epochs = 1
        cfg.callbacks.glimpse_images.n = 2
    train(cfg)
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard")).Reload()
    assert {"glimpses/overview", "glimpses/0", "glimpses/1"} <= set(events.Tags()["images"])
