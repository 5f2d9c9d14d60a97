"""RAMDataModule: MNIST, Fashion-MNIST or an image folder, as plain, translated or cluttered canvases.

A split lives in memory as ONE uint8 tensor; a batch is one indexing operation (``__getitems__``), not
B calls and a collate. Training canvases are drawn on the batch's device after transfer, from a
generator keyed by (seed, global step, rank), so they are new every step yet the same after a resume.
Validation and test canvases are drawn once on the CPU from the seed and cached under ``data_dir``.
"""

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ram_lightning.data.augment import jitter
from ram_lightning.data.canvas import VARIANTS, Placed, make_canvases
from ram_lightning.data.fetch import SPLIT_FILES, ensure_raw, part_path
from ram_lightning.data.idx import read_split
from ram_lightning.data.images import load_image
from ram_lightning.errors import ConfigError, DataError
from ram_lightning.seeding import generator_for

DATASETS = ("mnist", "fashion-mnist", "image_folder")
RAW_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": list(torchvision.datasets.FashionMNIST.classes),
}
DIGIT = 28
# Fixed sets are drawn in chunks of this many images. It is part of the recipe (it fixes the order of
# random draws), as is CANVAS_VERSION, which names the cache files: change either, bump the version.
EVAL_CHUNK = 1000
CANVAS_VERSION = 1
PAPER_CLUTTER = {60: (4, 8), 100: (8, 8)}  # canvas -> (distractors, size) of the paper's data sets
FOLDER_HOLDOUT = 0.1  # image_folder: this share of the images for validation, the same for test


class SplitDataset(Dataset):
    """A whole split as one tensor pair: images uint8 (N, ...) and labels int64 (N,)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # the DataLoader calls this with the whole batch's indices when it exists
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]  # (B, ...), (B,)


class StepBatchSampler(Sampler[list[int]]):
    """Training batches as a function of the global step: step s is batch s % E of epoch s // E (E steps per
    epoch), and each epoch's order is a permutation drawn from (seed, epoch). A run resumed in the middle of
    an epoch therefore continues with exactly the batches the uninterrupted run would have seen."""

    def __init__(self, n: int, batch_size: int, seed: int, position: Callable[[], tuple[int, int]]) -> None:
        self.n, self.batch_size, self.seed, self.position = n, batch_size, seed, position

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        step, per_epoch = self.position()
        epoch, start = divmod(step, per_epoch) if per_epoch else (0, 0)
        order = torch.randperm(self.n, generator=generator_for("cpu", self.seed, "train-order", epoch))
        for b in range(start, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def keys_order_by_step(trainer: pl.Trainer) -> bool:
    """Whether training batches come from StepBatchSampler: one process, no gradient accumulation."""
    return trainer.world_size == 1 and trainer.accumulate_grad_batches == 1


def reopen_cut_epoch(checkpoint: dict[str, Any]) -> None:
    """Mark an epoch that a stop cut short (``trainer.max_time``, ``should_stop``) as unfinished, in place.

    Lightning saves such an epoch as done and would resume with the next one, while StepBatchSampler, keyed
    by the global step, serves the rest of the cut epoch: each later epoch would then be counted one ahead
    and the run would end an epoch short. Unfinished, the epoch resumes in its middle, as after SIGTERM.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if not fit:
        return
    epochs = fit["epoch_progress"]
    saved_as_done = epochs["total"]["processed"] == epochs["total"]["completed"] + 1
    if saved_as_done and not fit["epoch_loop.batch_progress"].get("is_last_batch", True):
        for count in (epochs["total"], epochs["current"]):
            count["processed"] -= 1


def pass_batch(batch):
    """collate_fn: ``__getitems__`` already returns a batch (module level so workers can pickle it)."""
    return batch


class RAMDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data",
        dataset: str = "mnist",  # mnist | fashion-mnist | image_folder
        variant: str = "plain",  # plain (28x28) | translated | cluttered
        canvas: int = 60,  # side of the translated / cluttered canvas
        num_distractors: int = 4,
        distractor_size: int = 8,
        batch_size: int = 128,  # per device
        eval_batch_size: int = 1000,
        num_workers: int = 0,  # a batch is one tensor index: workers rarely pay off
        pin_memory: bool = False,
        val_size: int = 5000,  # held out of the training file (mnist, fashion-mnist)
        seed: int = 12345,  # fixes the validation split, the fixed canvases and training draws
        refetch: bool = False,  # replace raw files that fail verification
        root: str | None = None,  # image_folder: root/<class>/<image files>
        channels: int = 1,  # image_folder: 1 grayscale, 3 RGB
        image_size: int | None = None,  # image_folder: side of the square input; default canvas
        follow_symlinks: bool = False,  # image_folder: also read files that link outside root
        augment_rotate: float = 0.0,  # training only: turn each image by up to this many degrees
        augment_scale: float = 0.0,  # training only: resize each image by a factor within 1 +- this
        augment_elastic: float = 0.0,  # training only: elastic warp strength alpha, pixels (Simard: 34)
        augment_elastic_sigma: float = 4.0,  # the warp's smoothness: Gaussian std, pixels (Simard: 4)
    ):
        super().__init__()
        _check_choice("dataset", dataset, DATASETS)
        _check_choice("variant", variant, VARIANTS)
        for key, value, low in [
            ("canvas", canvas, 1),
            ("num_distractors", num_distractors, 0),
            ("distractor_size", distractor_size, 1),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
            ("val_size", val_size, 1),
            ("seed", seed, 0),
            ("channels", channels, 1),
        ]:
            _check_int(key, value, low)
        for key, value in [("pin_memory", pin_memory), ("refetch", refetch), ("follow_symlinks", follow_symlinks)]:
            if not isinstance(value, bool):
                raise ConfigError(f"data.{key}={value!r} is not allowed: use true or false")
        _check_range("augment_rotate", augment_rotate, 0, 180, "degrees in [0, 180]")
        _check_range("augment_scale", augment_scale, 0, 0.99, "a fraction in [0, 0.99]")
        _check_range("augment_elastic", augment_elastic, 0, 100, "pixels in [0, 100]")
        _check_range("augment_elastic_sigma", augment_elastic_sigma, 0.5, 20, "pixels in [0.5, 20]")
        if not isinstance(data_dir, str | os.PathLike) or not str(data_dir):
            raise ConfigError(f"data.data_dir={data_dir!r} is not allowed: give a folder path")
        if variant != "plain" and canvas <= DIGIT:
            raise ConfigError(
                f"data.canvas={canvas} is too small for variant={variant}: it must exceed the {DIGIT}-pixel "
                "digit (the paper uses 60 or 100)"
            )
        if variant == "cluttered" and not distractor_size <= DIGIT:
            raise ConfigError(
                f"data.distractor_size={distractor_size} is not allowed: crops come from {DIGIT}x{DIGIT} "
                f"digits, so use 1..{DIGIT} (the paper uses 8)"
            )

        self.data_dir = Path(data_dir)
        self.dataset, self.variant, self.canvas = dataset, variant, canvas
        self.num_distractors, self.distractor_size = num_distractors, distractor_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.val_size, self.seed, self.refetch = val_size, seed, refetch
        self.channels, self.follow_symlinks = channels, follow_symlinks
        self.augment_rotate, self.augment_scale = float(augment_rotate), float(augment_scale)
        self.augment_elastic, self.augment_elastic_sigma = float(augment_elastic), float(augment_elastic_sigma)

        if dataset == "image_folder":
            self._init_folder(root, channels, canvas if image_size is None else image_size)
        else:
            if channels != 1:
                raise ConfigError(f"data.channels={channels} is not allowed for {dataset}: its images are grayscale")
            self.root, self.image_size = None, None
            self.classes = CLASSES[dataset]
            side = DIGIT if variant == "plain" else canvas
            self.image_shape: tuple[int, int, int] = (1, side, side)
        self.num_classes: int = len(self.classes)
        self.recipe: dict = self._make_recipe()

        self.raw_dir: Path | None = None
        self.train_set = self.val_set = self.test_set = None
        self._pool: torch.Tensor | None = None  # training digits (N, 28, 28): distractor source
        self._pools: dict[str, torch.Tensor] = {}  # the same, per device
        self._last_step, self._micro = -1, 0

    def _init_folder(self, root, channels: int, size) -> None:
        if self.variant != "plain":
            raise ConfigError(f"data.variant={self.variant} is not allowed for image_folder: use plain")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels={channels} is not allowed: use 1 (grayscale) or 3 (RGB)")
        _check_int("image_size", size, 1)
        if root is None or not Path(root).is_dir():
            raise ConfigError(
                f"data.root={root!r} is not an existing folder: image_folder needs data.root=<folder> "
                "holding one subfolder of images per class"
            )
        try:
            self.classes, _ = find_classes(str(root))
        except FileNotFoundError as err:
            raise DataError(f"{root} has no class subfolders ({err}); put images in <root>/<class>/") from err
        self.root, self.image_size = Path(root), size
        self.image_shape = (channels, size, size)

    def _make_recipe(self) -> dict:
        recipe = {"dataset": self.dataset, "variant": self.variant, "image_shape": list(self.image_shape)}
        recipe["seed"] = self.seed
        if self.dataset == "image_folder":
            recipe.update(root=str(self.root), channels=self.channels, image_size=self.image_size)
            recipe["classes"] = list(self.classes)  # output index -> folder name, for predictions
            recipe["resize"] = "fit longer side, bilinear, zero-pad centred"  # what load_image does
            return recipe
        recipe["val_size"] = self.val_size
        if self.variant != "plain":
            recipe["canvas"] = self.canvas
            recipe["canvas_version"] = CANVAS_VERSION
        if self.variant == "cluttered":
            recipe.update(num_distractors=self.num_distractors, distractor_size=self.distractor_size)
        return recipe

    @property
    def name(self) -> str:
        """Short name of the input recipe, e.g. ``mnist``, ``translated60``, ``cluttered100``."""
        if self.dataset == "image_folder":
            return "image_folder"
        prefix = "" if self.dataset == "mnist" else "fashion_mnist"
        if self.variant == "plain":
            return prefix or "mnist"
        name = f"{self.variant}{self.canvas}"
        clutter = (self.num_distractors, self.distractor_size)
        if self.variant == "cluttered" and clutter != PAPER_CLUTTER.get(self.canvas):
            name += f"_d{clutter[0]}x{clutter[1]}"
        return f"{prefix}_{name}" if prefix else name

    # ------------------------------------------------------------------------- loading

    def prepare_data(self) -> None:
        """Fetch and verify the raw files, and draw the fixed validation/test canvases once."""
        if self.dataset == "image_folder":
            return  # nothing to fetch; the images are decoded in setup
        self.raw_dir = ensure_raw(self.dataset, self.data_dir, refetch=self.refetch)
        if self.variant != "plain":
            splits = self._read_splits()
            for split in ("val", "test"):
                self._fixed_canvases(split, splits)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return  # every stage uses the same tensors: load once
        if self.dataset == "image_folder":
            splits = self._read_folder()
        else:
            # a no-op when prepare_data already ran; makes setup alone work too
            self.raw_dir = ensure_raw(self.dataset, self.data_dir)
            splits = self._read_splits()
        self._pool = splits["train"][0]
        self.train_set = SplitDataset(*splits["train"])
        if self.variant == "plain":
            self.val_set, self.test_set = SplitDataset(*splits["val"]), SplitDataset(*splits["test"])
        else:
            self.val_set = SplitDataset(*self._fixed_canvases("val", splits))
            self.test_set = SplitDataset(*self._fixed_canvases("test", splits))

    def _read_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raw = self.data_dir / RAW_FOLDERS[self.dataset] / "raw"
        train_x, train_y = read_split(*(raw / f for f in SPLIT_FILES["train"]))  # (N, 28, 28), (N,)
        test = read_split(*(raw / f for f in SPLIT_FILES["test"]))
        n = train_y.shape[0]
        if self.val_size >= n:
            raise ConfigError(
                f"data.val_size={self.val_size} leaves no training images: {raw} holds {n}; use 1..{n - 1}"
            )
        val_idx, train_idx = _holdout(n, self.val_size, generator_for("cpu", self.seed, "val-split"))
        return {
            "train": (train_x[train_idx], train_y[train_idx]),
            "val": (train_x[val_idx], train_y[val_idx]),
            "test": test,
        }

    def _read_folder(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        class_to_idx = {c: i for i, c in enumerate(self.classes)}
        samples = make_dataset(str(self.root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        samples = self._inside_root(samples)
        if len(samples) < 3:
            raise DataError(
                f"{self.root} holds {len(samples)} image files; need at least 3 (train, val, test), "
                f"with extensions {', '.join(IMG_EXTENSIONS)}"
            )
        size = self.image_size
        images = torch.stack([load_image(p, self.channels, size) for p, _ in samples])  # (N, C, S, S)
        labels = torch.tensor([c for _, c in samples], dtype=torch.long)
        n = len(samples)
        n_hold = max(1, round(FOLDER_HOLDOUT * n))
        g = generator_for("cpu", self.seed, "folder-split")
        val_idx, rest = _holdout(n, n_hold, g)
        test_pos, train_pos = _holdout(rest.numel(), n_hold, g)
        test_idx, train_idx = rest[test_pos], rest[train_pos]
        return {k: (images[i], labels[i]) for k, i in [("train", train_idx), ("val", val_idx), ("test", test_idx)]}

    def _inside_root(self, samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Drop files that are links to somewhere outside the folder, unless data.follow_symlinks is set."""
        if self.follow_symlinks:
            return samples
        root = self.root.resolve()
        inside = [Path(p).resolve().is_relative_to(root) for p, _ in samples]
        outside = [p for (p, _), ok in zip(samples, inside, strict=True) if not ok]
        if outside:
            warnings.warn(
                f"skipped {len(outside)} file(s) linking outside {self.root}, e.g. {outside[0]}; "
                "set data.follow_symlinks=true to use them",
                stacklevel=2,
            )
        return [sample for sample, ok in zip(samples, inside, strict=True) if ok]

    # ------------------------------------------------------------------------- fixed canvases

    def cache_path(self, split: str) -> Path:
        """Where the fixed canvases of ``split`` are cached; the name carries the whole recipe."""
        parts = [self.dataset, f"{self.variant}{self.canvas}"]
        if self.variant == "cluttered":
            parts.append(f"d{self.num_distractors}x{self.distractor_size}")
        parts.append(f"seed{self.seed}")
        if split == "val":
            parts.append(f"val{self.val_size}")  # the hold-out's size changes which digits it holds
        parts += [split, f"v{CANVAS_VERSION}"]
        return self.data_dir / "canvases" / ("_".join(parts) + ".pt")

    def _fixed_canvases(self, split: str, splits: dict) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.cache_path(split)
        digits, labels = splits[split]
        cached = _load_cache(path, labels, (self.canvas, self.canvas))
        if cached is not None:
            return cached, labels
        images = self._draw_fixed(split, digits).canvases  # (N, S, S)
        _save_atomic({"images": images, "labels": labels, "name": path.name}, path)
        return images, labels

    def _draw_fixed(self, split: str, digits: torch.Tensor) -> Placed:
        # CPU generator: same seed, same pixels on any machine, whatever device trains
        g = generator_for("cpu", self.seed, split, "fixed-canvases")
        args = (self.variant, self.canvas, digits, self.num_distractors, self.distractor_size, g)  # pool: same split
        chunks = [make_canvases(digits[i : i + EVAL_CHUNK], *args) for i in range(0, len(digits), EVAL_CHUNK)]
        return Placed(*(torch.cat(parts) for parts in zip(*chunks, strict=True)))

    def digit_boxes(self, split: str = "test") -> torch.Tensor:
        """(N, 4) top, left, bottom, right (exclusive) pixel of the target image on each fixed canvas of
        ``split`` ("val" or "test"), drawn again from the seed, since the cache keeps only pixels; refuses
        if the replay made other canvases."""
        splits = self._read_folder() if self.dataset == "image_folder" else self._read_splits()
        digits = splits[split][0]  # (N, h, w)
        h, w = digits.shape[-2:]
        if self.variant == "plain":
            top = left = torch.zeros(len(digits), dtype=torch.long)
        else:
            placed = self._draw_fixed(split, digits)
            if not torch.equal(placed.canvases, self._fixed_canvases(split, splits)[0]):
                raise DataError(
                    f"the {split} canvases drawn again from seed {self.seed} differ from {self.cache_path(split)}; "
                    "delete that file and its canvases are drawn anew"
                )
            top, left = placed.top, placed.left
        return torch.stack([top, left, top + h, left + w], 1)

    def _canvases(self, digits: torch.Tensor, pool: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        args = (self.variant, self.canvas, pool, self.num_distractors, self.distractor_size, g)
        return make_canvases(digits, *args).canvases

    # ------------------------------------------------------------------------- batches

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        if trainer is not None and not keys_order_by_step(trainer):
            return self._loader(self.train_set, self.batch_size, shuffle=True)  # DistributedSampler's order
        order = StepBatchSampler(len(self.train_set), self.batch_size, self.seed, self._step_position)
        return DataLoader(
            self.train_set, batch_sampler=order, collate_fn=pass_batch, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
        )  # fmt: skip

    def _step_position(self) -> tuple[int, int]:
        """(global step, steps per epoch) of the attached trainer; (0, 0) when there is none."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        per_epoch = trainer.num_training_batches
        return trainer.global_step, int(per_epoch) if per_epoch != float("inf") else 0

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def _loader(self, dataset: SplitDataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise DataError("RAMDataModule: call prepare_data() and setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=pass_batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return self.transform_batch(batch, train=False)
        step = trainer.global_step
        # with gradient accumulation several batches share a global step; count them so each gets its
        # own draws. Checkpoints are written at step boundaries, so a resume starts this count at 0 too.
        self._micro = self._micro + 1 if step == self._last_step else 0
        self._last_step = step
        return self.transform_batch(batch, train=True, step=step, rank=trainer.global_rank, micro=self._micro)

    def transform_batch(
        self, batch, train: bool = False, step: int = 0, rank: int = 0, micro: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader batch -> (x float32 (B, C, H, W) in [0, 1], y int64 (B,)), on the batch's device.

        Raw 28x28 digits of a translated/cluttered recipe become canvases here: training draws are
        keyed by (seed, step, rank, micro); otherwise one fixed stream from the seed is used. Training
        images are first turned, resized and warped by ``augment_rotate`` / ``augment_scale`` /
        ``augment_elastic`` (before placement: the target digit changes, the clutter cut from other
        digits does not).
        """
        images, labels = batch
        if train and (self.augment_rotate or self.augment_scale or self.augment_elastic):
            g = generator_for(images.device, self.seed, "augment", step, micro, rank)
            images = jitter(
                images,
                self.augment_rotate,
                self.augment_scale,
                g,
                elastic=self.augment_elastic,
                elastic_sigma=self.augment_elastic_sigma,
            )
        if self.variant != "plain" and images.shape[-1] != self.canvas:
            keys = ("train", step, micro, rank) if train else ("eval",)
            g = generator_for(images.device, self.seed, *keys)
            images = self._canvases(images, self._pool_on(images.device), g)  # (B, S, S)
        if images.dim() == 3:
            images = images[:, None]  # (B, 1, H, W)
        return images.float().div_(255), labels.long()

    def _pool_on(self, device: torch.device) -> torch.Tensor:
        if self._pool is None:
            raise DataError("RAMDataModule: call setup() before making canvases")
        key = str(device)
        if key not in self._pools:
            self._pools[key] = self._pool.to(device)  # moved once: 47 MB for the MNIST training split
        return self._pools[key]

    def preview_batch(self, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training samples as the model sees them at step 0: (x (n, C, H, W), y (n,))."""
        if self.train_set is None:
            self.setup("fit")
        batch = self.train_set.__getitems__(list(range(min(n, len(self.train_set)))))
        return self.transform_batch(batch, train=True, step=0)

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        return {"recipe": dict(self.recipe)}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("recipe")
        if saved is not None and saved != self.recipe:
            warnings.warn(f"the checkpoint was trained on inputs {saved}, this run makes {self.recipe}", stacklevel=2)


# ----------------------------------------------------------------------------- helpers


def _check_choice(key: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"data.{key}={value!r} is not allowed: use one of {', '.join(allowed)}")


def _check_int(key: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"data.{key}={value!r} is not allowed: use an integer >= {low}")


def _check_range(key: str, value, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"data.{key}={value!r} is not allowed: use {allowed}")


def _holdout(n: int, k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random k of range(n) and the rest, each sorted so splits keep the file order."""
    perm = torch.randperm(n, generator=g)
    return perm[:k].sort().values, perm[k:].sort().values


def _load_cache(path: Path, labels: torch.Tensor, side: tuple[int, int]) -> torch.Tensor | None:
    """Cached canvases if the file exists and fits these labels; anything else means: draw again."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        images = saved["images"]
        ok = saved["name"] == path.name and torch.equal(saved["labels"], labels)
        ok = ok and images.dtype == torch.uint8 and tuple(images.shape) == (labels.shape[0], *side)
    except Exception:  # missing, truncated or foreign file: it is only a cache
        return None
    return images if ok else None


def _save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path)
    try:
        with tmp.open("xb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a partial one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
