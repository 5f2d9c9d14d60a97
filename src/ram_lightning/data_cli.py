"""`python -m ram_lightning data`: fetch and verify the data set, draw the fixed canvases, preview.

python -m ram_lightning data                      # MNIST into ./data/MNIST/raw, checked
python -m ram_lightning data data=cluttered60 preview=true
python -m ram_lightning data force=true           # replace files that fail their checksum
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ram_lightning.cli import build, run_reporting_errors
from ram_lightning.config import CONF_DIR
from ram_lightning.data.preview import save_grid


def prepare(cfg: DictConfig) -> dict:
    """Instantiate ``cfg.data``, prepare it, print a summary; write a preview PNG if ``cfg.preview``."""
    overrides = {"refetch": True} if cfg.get("force", False) else {}
    dm = build(cfg.data, **overrides)
    dm.prepare_data()
    dm.setup("fit")
    summary = {
        "name": dm.name,
        "recipe": dm.recipe,
        "image_shape": dm.image_shape,
        "num_classes": dm.num_classes,
        "counts": {"train": len(dm.train_set), "val": len(dm.val_set), "test": len(dm.test_set)},
        "raw_dir": str(dm.raw_dir) if dm.raw_dir is not None else None,
        "fixed_canvases": [str(dm.cache_path(s)) for s in ("val", "test")] if dm.variant != "plain" else [],
    }
    _print_summary(dm, summary)
    if cfg.get("preview", False):
        out = cfg.get("out") or Path(dm.data_dir) / f"preview_{dm.name}.png"
        x, y = dm.preview_batch(64)
        summary["preview"] = str(save_grid(x, y, out, classes=dm.classes if dm.num_classes > 10 else None))
        print(f"preview: {summary['preview']}")
    return summary


def _print_summary(dm, summary: dict) -> None:
    if dm.raw_dir is not None:
        print(f"{dm.dataset}: files in {dm.raw_dir}, sizes and SHA-256 digests OK")
        for f in sorted(p for p in Path(dm.raw_dir).iterdir() if not p.name.startswith(".")):
            print(f"    {f.name}  {f.stat().st_size} bytes")
    else:
        print(f"{dm.dataset}: {dm.root}, {dm.num_classes} classes")
    counts = summary["counts"]
    print(
        f"{dm.name}: inputs {tuple(dm.image_shape)}, {dm.num_classes} classes, "
        f"train {counts['train']} / val {counts['val']} / test {counts['test']}"
    )
    for path in summary["fixed_canvases"]:
        print(f"fixed canvases: {path}")


@hydra.main(config_path=CONF_DIR, config_name="fetch", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(prepare, cfg)


if __name__ == "__main__":
    main()
