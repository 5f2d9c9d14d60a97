"""RAMDataModule on tiny IDX files: splits, batches, fixed and per-step canvases, image folders, config."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import ram_lightning
from conftest import write_shapes_folder
from idx_utils import copy_files, write_tiny
from ram_lightning.data import RAMDataModule, fetch, images, load_image
from ram_lightning.data import datamodule as dm_module
from ram_lightning.errors import ConfigError, DataError

TINY = {"val_size": 50, "batch_size": 16, "eval_batch_size": 20}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """200 train / 50 test tiny MNIST in place, and the digest table made to match it."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    monkeypatch.setattr(fetch, "MNIST_FILES", write_tiny(raw))
    return tmp_path / "data"


def make(data_dir, **kw) -> RAMDataModule:
    dm = RAMDataModule(data_dir=str(data_dir), **{**TINY, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def first_batch(dm, loader):
    return dm.on_after_batch_transfer(next(iter(loader)), 0)


def test_plain_splits_and_batches(data_dir):
    dm = RAMDataModule(data_dir=str(data_dir), **TINY)
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10 and dm.recipe["variant"] == "plain"
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (150, 50, 50)
    x, y = first_batch(dm, dm.train_dataloader())
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert y.shape == (16,) and y.dtype == torch.int64
    # the hold-out is a seeded subset of the training file, disjoint from what is trained on
    train_rows = {hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in dm.train_set.images}
    assert not any(hashlib.sha1(im.numpy().tobytes()).hexdigest() in train_rows for im in dm.val_set.images)


def test_loader_batches_come_from_getitems(data_dir, monkeypatch):
    dm = make(data_dir)
    calls = []
    real = dm.train_set.__getitems__
    monkeypatch.setattr(dm.train_set, "__getitems__", lambda idx: calls.append(len(idx)) or real(idx))
    images, labels = next(iter(dm.train_dataloader()))
    assert calls == [16] and images.shape == (16, 28, 28) and images.dtype == torch.uint8


def test_translated_batches_are_canvases(data_dir):
    dm = make(data_dir, variant="translated", canvas=60)
    assert dm.image_shape == (1, 60, 60)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = first_batch(dm, loader)
        assert x.shape[1:] == (1, 60, 60) and x.dtype == torch.float32 and x.max() <= 1
    raw_x, _ = next(iter(dm.train_dataloader()))
    x, _ = dm.transform_batch((raw_x, torch.zeros(16, dtype=torch.long)), train=True, step=3)
    assert torch.equal((x * 255).round().sum((1, 2, 3)), raw_x.double().sum((1, 2)).float())  # mass kept


def test_fixed_canvases_same_across_instances_and_cached(data_dir, tmp_path, monkeypatch):
    other = tmp_path / "other"
    copy_files(data_dir / "MNIST" / "raw", other / "MNIST" / "raw")
    a = make(data_dir, variant="cluttered", canvas=60)
    b = make(other, variant="cluttered", canvas=60)  # draws its own, in another folder
    assert a.cache_path("val").exists() and b.cache_path("test").exists()
    assert torch.equal(a.val_set.images, b.val_set.images) and torch.equal(a.test_set.images, b.test_set.images)

    drawn = []
    real = dm_module.make_canvases
    monkeypatch.setattr(dm_module, "make_canvases", lambda *args: drawn.append(args) or real(*args))
    c = make(data_dir, variant="cluttered", canvas=60)  # same recipe: read back from the cache
    assert drawn == [] and torch.equal(c.val_set.images, a.val_set.images)


def test_fixed_canvases_same_in_another_process(data_dir, tmp_path):
    dm = make(data_dir, variant="cluttered", canvas=60)
    here = hashlib.sha256(dm.val_set.images.numpy().tobytes() + dm.test_set.images.numpy().tobytes())
    other = tmp_path / "proc"
    copy_files(data_dir / "MNIST" / "raw", other / "MNIST" / "raw")
    script = (
        "import hashlib, json, sys\n"
        "from ram_lightning.data import fetch, RAMDataModule\n"
        "fetch.MNIST_FILES = {k: tuple(v) for k, v in json.loads(sys.argv[2]).items()}\n"
        "dm = RAMDataModule(data_dir=sys.argv[1], variant='cluttered', canvas=60, val_size=50)\n"
        "dm.prepare_data(); dm.setup('fit')\n"
        "print(hashlib.sha256(dm.val_set.images.numpy().tobytes() + dm.test_set.images.numpy().tobytes())"
        ".hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(ram_lightning.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", script, str(other), json.dumps(fetch.MNIST_FILES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.split()[-1] == here.hexdigest()


def test_distractors_come_from_the_same_split(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    monkeypatch.setattr(fetch, "MNIST_FILES", write_tiny(raw, train_value=10, test_value=20))
    dm = make(tmp_path, variant="cluttered", canvas=40)
    test_values = set(dm.test_set.images.unique().tolist())
    assert test_values <= {0, *range(20, 256, 20), 255} and 20 in test_values  # sums of test pixels only
    x, _ = dm.transform_batch(next(iter(dm.train_dataloader())), train=True, step=0)
    assert set((x * 255).round().long().unique().tolist()) <= {0, *range(10, 256, 10), 255}

    seen = []
    real = dm_module.make_canvases

    def spy(digits, variant, canvas, pool, *rest):
        seen.append(pool)
        return real(digits, variant, canvas, pool, *rest)

    monkeypatch.setattr(dm_module, "make_canvases", spy)
    dm.cache_path("val").unlink()
    splits = dm._read_splits()
    dm._fixed_canvases("val", splits)  # validation canvases: crops of validation digits only
    assert seen and all(pool is splits["val"][0] for pool in seen)


@pytest.mark.parametrize("variant", ["translated", "cluttered"])
def test_digit_boxes_say_where_each_test_digit_lies(data_dir, variant):
    dm = make(data_dir, variant=variant, canvas=40)
    top, left, bottom, right = dm.digit_boxes("test").T
    digits = dm._read_splits()["test"][0]  # (50, 28, 28)
    assert top.shape == (50,) and int(top.max()) <= 12 and int(left.max()) <= 12
    assert (bottom - top == 28).all() and (right - left == 28).all()
    for i in range(50):  # every digit pixel is there (clutter only adds)
        window = dm.test_set.images[i, top[i] : top[i] + 28, left[i] : left[i] + 28]
        assert (window >= digits[i]).all()
    assert (top != top[0]).any()  # drawn at random, not one place
    torch.save({**torch.load(dm.cache_path("test")), "images": dm.test_set.images.flip(-1)}, dm.cache_path("test"))
    with pytest.raises(DataError, match="delete that file"):
        dm.digit_boxes("test")


def test_cache_name_follows_the_recipe(data_dir):
    base = dict(variant="cluttered", canvas=60, num_distractors=4, distractor_size=8, seed=1)
    name = RAMDataModule(data_dir=str(data_dir), **base).cache_path("test").name
    assert all(part in name for part in ("mnist", "cluttered60", "d4x8", "seed1", "test"))
    for change in [
        {"canvas": 100},
        {"num_distractors": 8},
        {"distractor_size": 6},
        {"seed": 2},
        {"variant": "translated"},
    ]:
        assert RAMDataModule(data_dir=str(data_dir), **{**base, **change}).cache_path("test").name != name
    val = RAMDataModule(data_dir=str(data_dir), **base).cache_path("val").name
    assert RAMDataModule(data_dir=str(data_dir), **{**base, "val_size": 10}).cache_path("val").name != val


def test_training_canvases_change_every_step_and_repeat_after_resume(data_dir):
    dm = make(data_dir, variant="cluttered", canvas=60)
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=True, global_step=7, global_rank=0)
    a = dm.on_after_batch_transfer(batch, 0)[0]
    b = dm.on_after_batch_transfer(batch, 0)[0]  # same step again: an accumulated micro-batch
    dm.trainer.global_step = 8
    c = dm.on_after_batch_transfer(batch, 0)[0]
    assert not torch.equal(a, b) and not torch.equal(a, c)

    resumed = make(data_dir, variant="cluttered", canvas=60)
    resumed.trainer = SimpleNamespace(training=True, global_step=7, global_rank=0)
    assert torch.equal(resumed.on_after_batch_transfer(batch, 0)[0], a)
    resumed.trainer.global_rank = 1  # another DDP rank draws other canvases
    resumed.trainer.global_step = 9
    r1 = resumed.on_after_batch_transfer(batch, 0)[0]
    resumed.trainer.global_rank = 0
    assert not torch.equal(r1, resumed.on_after_batch_transfer(batch, 0)[0])

    dm.trainer = SimpleNamespace(training=False, global_step=8, global_rank=0)  # validation batches
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(dm.on_after_batch_transfer(val, 0)[0], val[0][:, None].float() / 255)


@pytest.mark.parametrize("augment", [{"augment_rotate": 20.0, "augment_scale": 0.2}, {"augment_elastic": 34.0}])
def test_augment_changes_training_digits_only(data_dir, augment):
    kw = {"variant": "translated", "canvas": 40}
    jitter_kw = {**kw, **augment}
    plain, jittered, resumed = make(data_dir, **kw), make(data_dir, **jitter_kw), make(data_dir, **jitter_kw)
    batch = next(iter(plain.train_dataloader()))
    for dm in (plain, jittered, resumed):
        dm.trainer = SimpleNamespace(training=True, global_step=3, global_rank=0)
    a, b = (dm.on_after_batch_transfer(batch, 0)[0] for dm in (plain, jittered))  # (B, 1, 40, 40)
    assert not torch.equal(a, b)
    assert torch.equal(resumed.on_after_batch_transfer(batch, 0)[0], b)  # the same step draws the same

    def centre(x):  # (B, 2) ink's centre of mass
        grid = torch.arange(40.0)
        mass = x[:, 0].sum((1, 2))
        return torch.stack([(x[:, 0].sum(2) * grid).sum(1), (x[:, 0].sum(1) * grid).sum(1)], 1) / mass[:, None]

    assert (centre(a) - centre(b)).abs().max() < 4  # each digit changed where it was, not moved

    for dm in (plain, jittered):
        dm.trainer = SimpleNamespace(training=False, global_step=3, global_rank=0)
    val = next(iter(plain.val_dataloader()))
    assert torch.equal(plain.on_after_batch_transfer(val, 0)[0], jittered.on_after_batch_transfer(val, 0)[0])


def test_lightning_fit_sees_float_canvases(data_dir):
    import pytorch_lightning as pl

    seen = []

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            seen.append((x.shape, x.dtype, y.dtype))
            return (self.w * x.mean()).sum()

        def validation_step(self, batch, batch_idx):
            seen.append(("val", batch[0].shape))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = RAMDataModule(data_dir=str(data_dir), variant="translated", canvas=40, **TINY)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Probe(), datamodule=dm)
    assert seen[0] == (torch.Size([16, 1, 40, 40]), torch.float32, torch.int64)
    assert ("val", torch.Size([20, 1, 40, 40])) in seen


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"dataset": "cifar"}, "data.dataset='cifar'"),
        ({"variant": "rotated"}, "data.variant='rotated'"),
        ({"batch_size": 0}, "data.batch_size=0"),
        ({"val_size": "10"}, "data.val_size='10'"),
        ({"variant": "translated", "canvas": 28}, "data.canvas=28"),
        ({"variant": "cluttered", "distractor_size": 40}, "data.distractor_size=40"),
        ({"pin_memory": "yes"}, "data.pin_memory='yes'"),
        ({"augment_rotate": -5}, "data.augment_rotate=-5"),
        ({"augment_scale": 1.5}, "data.augment_scale=1.5"),
        ({"augment_scale": "0.1"}, "data.augment_scale='0.1'"),
        ({"augment_elastic": -1}, "data.augment_elastic=-1"),
        ({"augment_elastic_sigma": 0}, "data.augment_elastic_sigma=0"),
        ({"channels": 3}, "data.channels=3"),
        ({"dataset": "image_folder"}, "data.root=None"),
        ({"dataset": "image_folder", "root": ".", "variant": "cluttered"}, "data.variant=cluttered"),
    ],
)
def test_bad_config_values_are_named(kw, key):
    with pytest.raises(ConfigError) as info:
        RAMDataModule(**kw)
    assert key in str(info.value)


def test_val_size_too_large_is_a_config_error(data_dir):
    dm = RAMDataModule(data_dir=str(data_dir), val_size=200)
    with pytest.raises(ConfigError, match="data.val_size=200.*holds 200"):
        dm.setup("fit")


def test_fashion_mnist_uses_its_own_folder_and_classes(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "FASHION_MNIST_FILES", write_tiny(tmp_path / "FashionMNIST" / "raw"))
    dm = make(tmp_path, dataset="fashion-mnist")
    assert dm.raw_dir == tmp_path / "FashionMNIST" / "raw" and dm.classes[0] == "T-shirt/top"
    assert dm.name == "fashion_mnist"


# ----------------------------------------------------------------------------- image folders


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for cls, sizes in {
        "cat": [(10, 20), (40, 30), (28, 28), (64, 8)],
        "dog": [(33, 33), (20, 50), (50, 20)],
    }.items():
        (root / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.new("L", (w, h), 255).save(root / cls / f"{i}.png")
    Image.new("RGB", (30, 15), (255, 0, 0)).save(root / "dog" / "rgb.png")
    return root


def test_image_folder_loads_and_splits(folder, tmp_path):
    dm = RAMDataModule(
        data_dir=str(tmp_path / "d"),
        dataset="image_folder",
        root=str(folder),
        image_size=32,
        batch_size=4,
        eval_batch_size=4,
    )
    assert dm.num_classes == 2 and dm.classes == ["cat", "dog"] and dm.image_shape == (1, 32, 32)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (6, 1, 1)
    x, y = first_batch(dm, dm.train_dataloader())
    assert x.shape == (4, 1, 32, 32) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    rgb = RAMDataModule(dataset="image_folder", root=str(folder), channels=3, image_size=24)
    assert rgb.image_shape == (3, 24, 24) and rgb.recipe["channels"] == 3


def test_load_image_fits_and_centres(folder):
    im = load_image(folder / "cat" / "0.png", channels=1, size=32)  # 10 wide, 20 high, all white
    assert im.shape == (1, 32, 32) and im.dtype == torch.uint8
    cols = (im[0] > 0).any(0).nonzero().flatten()
    assert cols.min() == 8 and cols.max() == 23 and (im[0] > 0).any(1).all()  # 16 wide, centred, full height
    red = load_image(folder / "dog" / "rgb.png", channels=3, size=16)
    assert red.shape == (3, 16, 16) and red[0].max() == 255 and red[1].max() == 0


def test_non_image_file_is_named(folder, tmp_path):
    bad = folder / "cat" / "notes.png"
    bad.write_text("not a picture")
    dm = RAMDataModule(data_dir=str(tmp_path / "d"), dataset="image_folder", root=str(folder), image_size=16)
    with pytest.raises(DataError, match="notes.png is not a readable image"):
        dm.setup("fit")


def test_oversized_image_is_refused_before_decoding(folder, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 500)
    with pytest.raises(DataError, match=r"1\.png claims 40x30 pixels"):
        load_image(folder / "cat" / "1.png", channels=1, size=16)


# ----------------------------------------------------------------------------- the data command


def test_data_command_composes_prepares_and_previews(data_dir, tmp_path):
    from hydra import compose, initialize_config_dir

    from ram_lightning.config import CONF_DIR
    from ram_lightning.data_cli import prepare

    out = tmp_path / "preview.png"
    overrides = [
        "data=cluttered60",
        f"paths.data_dir={data_dir}",
        "data.val_size=50",
        "preview=true",
        f"out={out}",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="fetch", overrides=overrides)
    summary = prepare(cfg)
    assert summary["name"] == "cluttered60" and summary["counts"] == {"train": 150, "val": 50, "test": 50}
    assert summary["recipe"]["num_distractors"] == 4 and Path(summary["preview"]) == out
    with Image.open(out) as im:
        assert im.size[0] > 8 * 60


@pytest.mark.parametrize(
    "name, shape",
    [
        ("mnist", (1, 28, 28)),
        ("translated60", (1, 60, 60)),
        ("cluttered100", (1, 100, 100)),
        ("fashion_mnist", (1, 28, 28)),
    ],
)
def test_data_configs_instantiate(name, shape, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ram_lightning.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="fetch", overrides=[f"data={name}", f"paths.data_dir={tmp_path}"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, RAMDataModule) and dm.image_shape == shape and dm.data_dir == tmp_path


def test_data_command_reports_the_config_error_itself(tmp_path):
    from hydra import compose, initialize_config_dir

    from ram_lightning.config import CONF_DIR
    from ram_lightning.data_cli import prepare

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="fetch",
            overrides=["data=translated60", "data.canvas=20", f"paths.data_dir={tmp_path}"],
        )
    with pytest.raises(ConfigError, match="data.canvas=20"):  # not Hydra's InstantiationException wrapper
        prepare(cfg)


def test_image_folder_skips_links_that_leave_the_folder(tmp_path) -> None:
    root = write_shapes_folder(tmp_path / "shapes", n_per_class=4)
    secret = write_shapes_folder(tmp_path / "elsewhere", n_per_class=1) / "left" / "0.png"
    (root / "left" / "link.png").symlink_to(secret)
    kwargs = dict(dataset="image_folder", root=str(root), image_size=16, data_dir=str(tmp_path / "d"))
    dm = RAMDataModule(**kwargs)
    with pytest.warns(UserWarning, match=r"skipped 1 file\(s\) linking outside .*link.png"):
        dm.setup("fit")
    assert sum(len(s) for s in (dm.train_set, dm.val_set, dm.test_set)) == 8
    followed = RAMDataModule(**kwargs, follow_symlinks=True)
    followed.setup("fit")
    assert sum(len(s) for s in (followed.train_set, followed.val_set, followed.test_set)) == 9
