"""`python -m ram_lightning predict ckpt_path=PATH inputs=DIR_OR_FILE[,FILE...]`: classify your own images.

Each file becomes the checkpoint's input the way its data recipe says (see ``data/own_images.py``).
Folders are read one level deep (their subfolders are not entered). A file that cannot be classified
is reported and skipped; the command fails only when no file at all could be classified.
"""

import csv
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from .checkpoint import load_module
from .cli import run_reporting_errors
from .config import CONF_DIR
from .data.images import MAX_PIXELS
from .data.own_images import check_recipe, check_size, class_names, describe_inputs, input_shape, to_input
from .errors import CheckpointError, ConfigError, DataError
from .model import RecurrentAttention
from .paths import fresh_paths
from .viz.gif import write_gif
from .viz.glimpses import draw_batch

# What a folder scan tries to read; a file named explicitly is always tried, whatever its name.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class Settings:
    """The checked values of a predict config."""

    inputs: list[Path]
    samples: int  # Monte Carlo glimpse paths averaged per file
    deterministic: bool
    seed: int
    follow_symlinks: bool
    max_pixels: int
    gif: bool


@dataclass
class Job:
    """A loaded checkpoint and what predicting with it needs."""

    net: torch.nn.Module
    recipe: dict  # how the checkpoint's inputs were made
    names: list[str]  # output index -> class name
    s: Settings


def _int_key(cfg: DictConfig, key: str, low: int, high: int | None = None) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer in {low}..{high}" if high is not None else f"an integer >= {low}"
        raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")
    return value


def _bool_key(cfg: DictConfig, key: str) -> bool:
    if not isinstance(cfg[key], bool):
        raise ConfigError(f"{key}={cfg[key]!r} is not allowed: use true or false")
    return cfg[key]


def parse_inputs(value: object) -> list[Path]:
    """``inputs`` as paths: a list, or one string of comma-separated paths."""
    items = list(value) if isinstance(value, ListConfig | list | tuple) else str(value).split(",")
    paths = [Path(str(p).strip()) for p in items if str(p).strip()]
    if not paths:
        raise ConfigError(f"inputs={value!r} names no file or folder: use inputs=<folder> or inputs=[a.png,b.jpg]")
    return paths


def require(cfg: DictConfig) -> None:
    for key, example in (("ckpt_path", "<run folder>/checkpoints/last.ckpt"), ("inputs", "<folder or image file>")):
        if OmegaConf.is_missing(cfg, key) or cfg[key] is None:
            raise ConfigError(f"{key} is required: predict ckpt_path=... inputs=... ({key}={example})")


def check_cfg(cfg: DictConfig, mc_eval: int) -> Settings:
    """Every key checked once, before any image is read; ``mc_eval`` is the checkpoint's default."""
    deterministic = _bool_key(cfg, "deterministic")
    samples = mc_eval if cfg.mc is None else _int_key(cfg, "mc", 1)
    return Settings(
        inputs=parse_inputs(cfg.inputs),
        samples=1 if deterministic else samples,  # the policy mean gives the same path every time
        deterministic=deterministic,
        seed=_int_key(cfg, "seed", 0),
        follow_symlinks=_bool_key(cfg, "follow_symlinks"),
        max_pixels=_int_key(cfg, "max_pixels", 1, MAX_PIXELS),  # the shared image loader's own cap
        gif=_bool_key(cfg, "gif"),
    )


# ----------------------------------------------------------------------------- finding the files


def _outside(entry: Path, folder: Path) -> Path | None:
    """Where a symbolic link in ``folder`` points, if that is outside the folder; else None."""
    if not entry.is_symlink():
        return None
    target = entry.resolve()
    return None if target.is_relative_to(folder.resolve()) else target


def scan_folder(folder: Path, follow_symlinks: bool) -> tuple[list[Path], list[str]]:
    """The image files directly inside ``folder`` (sorted by name) and a message per entry left out."""
    files, skipped, other = [], [], []
    for entry in sorted(folder.iterdir()):
        target = _outside(entry, folder)
        if target is not None and not follow_symlinks:
            skipped.append(f"{entry}: a symbolic link to {target}, outside {folder} (follow_symlinks=true reads it)")
        elif entry.is_dir():
            other.append(f"{entry.name}/")
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
        else:
            other.append(entry.name)
    if other:  # one line: a folder of images often holds notes, sidecars and subfolders
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        skipped.append(f"{folder}: {len(other)} entries that are not image files or are subfolders ({shown})")
    return files, skipped


def collect_files(inputs: list[Path], follow_symlinks: bool) -> tuple[list[Path], list[str]]:
    """Files named directly are taken as they are; folders are scanned. Repeats are dropped."""
    files, skipped = [], []
    for p in inputs:
        if p.is_dir():
            found, msgs = scan_folder(p, follow_symlinks)
            files += found
            skipped += msgs
        elif p.is_file():
            files.append(p)
        else:
            skipped.append(f"{p}: no such file or folder")
    return list(dict.fromkeys(files)), skipped


# ----------------------------------------------------------------------------- classifying


@torch.no_grad()
def classify(net: torch.nn.Module, x: torch.Tensor, s: Settings) -> torch.Tensor:
    """x (1, C, H, W) in [0, 1] -> class probabilities (classes,), averaged over ``s.samples`` paths.

    A fresh generator per file: a file's answer depends on the file and the seed, not on its neighbours.
    """
    gen = torch.Generator().manual_seed(s.seed)
    out = net(x.repeat_interleave(s.samples, 0), deterministic=s.deterministic, generator=gen)  # (M, ...)
    return out.logits.float().softmax(-1).mean(0)


def _csv_path(cfg: DictConfig) -> Path:
    path = Path(cfg.out) if cfg.out is not None else Path(f"predictions_{datetime.now():%Y-%m-%d_%H-%M-%S}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    return fresh_paths(path.parent, [path.name])[0]  # an existing file keeps its contents


def write_csv(rows: list[dict], names: list[str], path: Path) -> None:
    columns = ["file", "class", "probability", *(f"prob_{n}" for n in names), "note"]
    with open(path, "x", newline="") as f:  # "x": never overwrite
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([r["file"], r["class"], f"{r['probability']:.6f}", *(f"{p:.6f}" for p in r["probs"]),
                             r["note"]])  # fmt: skip


def _write_gif(job: Job, x: torch.Tensor, file: Path, out_dir: Path) -> Path:
    drawn = draw_batch(job.net, x, None, job.names, deterministic=job.s.deterministic, seed=job.s.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_gif(drawn.full[0], fresh_paths(out_dir, [f"{file.stem}.gif"])[0], fps=2)


def load_job(cfg: DictConfig) -> Job:
    """The checkpoint's network, recipe and class names, and the checked settings; refuses what cannot work."""
    require(cfg)
    module = load_module(cfg.ckpt_path)
    s = check_cfg(cfg, int(module.hparams.mc_eval))
    recipe = check_recipe(module.hparams.get("recipe"), cfg.ckpt_path)
    names = class_names(recipe)
    if input_shape(recipe) != tuple(module.hparams.in_shape) or len(names) != module.hparams.num_classes:
        raise CheckpointError(f"{cfg.ckpt_path}: its recipe {recipe} does not match its model's input or classes")
    if not isinstance(module.net, RecurrentAttention):
        if s.gif:
            kind = module.hparams.net.get("kind")
            raise ConfigError(f"gif=true draws glimpses, but {cfg.ckpt_path} holds a {kind!r} model without any")
        s.samples = 1  # the comparison models have no sampling to average over
    return Job(module.net, recipe, names, s)


def classify_file(job: Job, file: Path) -> tuple[dict, torch.Tensor]:
    """The CSV row of one file and its input x (1, C, H, W); DataError when the file is refused."""
    check_size(file, job.s.max_pixels)
    image, inverted = to_input(file, job.recipe)  # uint8 (C, H, W)
    x = image[None].float().div(255)  # (1, C, H, W), scaled as the DataModule scales
    probs = classify(job.net, x, job.s)
    best = int(probs.argmax())
    note = "inverted: dark on light" if inverted else ""
    row = {"file": str(file), "class": job.names[best], "index": best, "probability": float(probs[best]),
           "probs": probs.tolist(), "note": note, "gif": None}  # fmt: skip
    return row, x


def predict(cfg: DictConfig) -> list[dict]:
    """Classify every image file in ``cfg.inputs``; print one line per file, write the CSV, return the rows."""
    job = load_job(cfg)
    files, skipped = collect_files(job.s.inputs, job.s.follow_symlinks)
    for msg in skipped:
        print(f"skipped {msg}", file=sys.stderr)
    csv_path = _csv_path(cfg)
    s = job.s
    mode = "policy mean" if s.deterministic else f"mean over {s.samples} sampled glimpse paths, seed {s.seed}"
    print(f"inputs: {describe_inputs(job.recipe)}; {mode}")
    rows = []
    for file in files:
        try:
            row, x = classify_file(job, file)
        except DataError as err:
            skipped.append(str(err))
            print(f"skipped {err}", file=sys.stderr)
            continue
        if s.gif:
            row["gif"] = str(_write_gif(job, x, file, csv_path.with_name(f"{csv_path.stem}_gifs")))
        note = f"  [{row['note']}]" if row["note"] else ""
        print(f"{file}: {row['class']} ({row['probability']:.1%}){note}")
        rows.append(row)
    if not rows:
        raise DataError(f"nothing could be classified in {', '.join(map(str, s.inputs))}: every input was skipped")
    write_csv(rows, job.names, csv_path)
    print(f"wrote {len(rows)} predictions to {csv_path}" + (" (some inputs skipped: see above)" if skipped else ""))
    return rows


@hydra.main(config_path=CONF_DIR, config_name="predict", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(predict, cfg)


def _list_syntax(arg: str) -> str:
    """``inputs=a.png,b.png`` -> ``inputs=['a.png','b.png']``: to Hydra a bare comma list means a sweep."""
    key, _, value = arg.partition("=")
    if key.lstrip("+") != "inputs" or "," not in value or value[:1] in "[\"'":
        return arg
    quoted = ("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in value.split(","))
    return f"{key}=[{','.join(quoted)}]"


def main() -> None:
    if not {"-m", "--multirun"} & set(sys.argv[1:]):
        sys.argv = [sys.argv[0], *map(_list_syntax, sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
