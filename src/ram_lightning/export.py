"""`python -m ram_lightning export ckpt_path=PATH format=torchscript|onnx [out=FILE]`: a model file for serving.

The exported model is the deterministic network, the T-glimpse unroll included: every next location is
the policy mean, so the same image always gives the same answer. It takes ``x`` (B, C, H, W) float32 in
[0, 1] and returns ``(logits (B, classes), locations (B, T, 2))``; loading it needs only ``torch.jit.load``
or onnxruntime, not this package. A JSON file beside it records how to make ``x`` and the class names.
"""

import copy
import io
import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .checkpoint import load_module
from .cli import run_reporting_errors
from .config import CONF_DIR
from .data.datamodule import CLASSES
from .data.own_images import class_names, describe_inputs
from .errors import CheckpointError, ConfigError
from .lit_module import RAMLitModule
from .model import RecurrentAttention

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
TRACE_BATCH, CHECK_BATCH = 2, 3  # traced with one batch size, checked on another
TOLERANCE = 1e-4  # largest |exported - eager| accepted on the check batch


class Deterministic(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (logits (B, classes), locations (B, T, 2)) with locations at the policy mean."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x, deterministic=True)
        return out.logits, out.locations


def deterministic_net(module: RAMLitModule, ckpt_path: str) -> Deterministic:
    """The module's network in deterministic form; a uniform first location becomes the centre."""
    net = module.net
    if isinstance(net, RecurrentAttention):
        if net.random_glimpses:
            raise CheckpointError(
                f"{ckpt_path} is the random-glimpse ablation: its locations are random by design, so there is "
                "no deterministic model to export"
            )
        if net.first_location == "uniform":
            warnings.warn(
                f"{ckpt_path} was trained with a uniform random first location; the exported model starts at "
                "the centre (0, 0) so that it is deterministic, which may cost some accuracy",
                stacklevel=2,
            )
            net = copy.deepcopy(net)
            net.first_location = "center"
    return Deterministic(net).eval()


@contextmanager
def _quiet_tracing():
    """Silence what does not concern the user, and only that.

    The tracer warns about Python values it freezes into the graph, such as the image size, fixed per
    checkpoint; every export is instead checked against the eager model on another batch size. torch marks
    ``torch.jit`` as deprecated; TorchScript files still load with ``torch.jit.load``, and ONNX is offered too.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=FutureWarning)
        yield


def _max_diffs(got: list, want: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    return [float((torch.as_tensor(g) - w).abs().max()) if w.numel() else 0.0 for g, w in zip(got, want, strict=True)]


def to_torchscript(model: Deterministic, example: torch.Tensor, check: torch.Tensor) -> tuple[bytes, list[float]]:
    """The traced model as bytes, and its max |diff| to eager on ``check`` after a save/load round trip."""
    with torch.no_grad(), _quiet_tracing():
        try:
            traced = torch.jit.trace(model, example, check_inputs=[(check,)])
        except torch.jit.TracingCheckError as err:  # the graph depends on the batch size: unusable
            raise CheckpointError(f"the traced model does not generalise to other batch sizes: {err}") from err
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        loaded = torch.jit.load(io.BytesIO(buf.getvalue()))
        return buf.getvalue(), _max_diffs(loaded(check), model(check))


def to_onnx(model: Deterministic, example: torch.Tensor, check: torch.Tensor, opset: int) -> tuple[bytes, list[float]]:
    """The ONNX model as bytes (batch axis dynamic), and its max |diff| to eager on ``check``.

    The TorchScript-based exporter (``dynamo=False``) handles the unroll's Python loop by tracing it; it needs
    the ``onnx`` package. The diff is measured with onnxruntime when installed, else only the graph is checked.
    """
    try:
        import onnx
    except ImportError:
        raise ConfigError("format=onnx needs the onnx package: pip install 'ram-lightning[onnx]'") from None
    buf = io.BytesIO()
    batch = {0: "batch"}
    try:
        with torch.no_grad(), _quiet_tracing():
            torch.onnx.export(
                model, (example,), buf, dynamo=False, opset_version=opset, input_names=["x"],
                output_names=["logits", "locations"], dynamic_axes={"x": batch, "logits": batch, "locations": batch},
            )  # fmt: skip
    except Exception as err:  # the exporter's failures have many types; the user needs its words
        raise ConfigError(
            f"torch {torch.__version__} could not export this model to ONNX opset {opset}: {err}"
        ) from err
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()))
    try:
        import onnxruntime
    except ImportError:
        return buf.getvalue(), []
    session = onnxruntime.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        return buf.getvalue(), _max_diffs(session.run(None, {"x": check.numpy()}), model(check))


def out_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """The model file and its sidecar ``<model file>.json``, both new: _1, _2, ... is added to the name if needed."""
    suffix = FORMATS[cfg.format]
    path = Path(cfg.out) if cfg.out is not None else Path(cfg.ckpt_path).with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        model_path = path.with_name(f"{path.stem}_{n}{path.suffix}" if n else path.name)
        json_path = model_path.with_name(model_path.name + ".json")
        if not model_path.exists() and not json_path.exists():
            return model_path, json_path
        n += 1


def sidecar(cfg: DictConfig, module: RAMLitModule, model: Deterministic, model_path: Path, diffs: list[float]) -> dict:
    """How to feed the exported model and read its outputs."""
    recipe = module.hparams.get("recipe")
    known = recipe and recipe.get("dataset") in (*CLASSES, "image_folder")
    names = class_names(recipe) if known else [str(c) for c in range(module.hparams.num_classes)]
    C, H, W = module.hparams.in_shape
    net = model.net
    T = net.num_glimpses if isinstance(net, RecurrentAttention) else 0
    return {
        "model": model_path.name,
        "format": cfg.format,
        "input": {
            "name": "x",
            "shape": ["batch", C, H, W],
            "dtype": "float32",
            "range": [0, 1],
            "preprocess": describe_inputs(recipe) if known else "unknown: the checkpoint records no data recipe",
        },
        "outputs": {
            "logits": ["batch", len(names)],
            "locations": ["batch", T, 2],
            "locations_meaning": "(x, y) of each glimpse in [-1, 1]; (-1, -1) is the top-left corner",
        },
        "classes": names,
        "first_location": net.first_location if isinstance(net, RecurrentAttention) else None,
        "recipe": recipe,
        "checkpoint": str(cfg.ckpt_path),
        "check": {"batch": CHECK_BATCH, "max_abs_diff_logits_locations": diffs},
        "torch": torch.__version__,
        **({"opset": int(cfg.opset)} if cfg.format == "onnx" else {}),
    }


def _check_cfg(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt_path") or cfg.ckpt_path is None:
        raise ConfigError("ckpt_path is required: export ckpt_path=<run folder>/checkpoints/last.ckpt format=onnx")
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r} is not allowed: use one of {', '.join(FORMATS)}")
    if isinstance(cfg.opset, bool) or not isinstance(cfg.opset, int) or not 14 <= cfg.opset <= 20:
        raise ConfigError(f"opset={cfg.opset!r} is not allowed: use an ONNX opset in 14..20")


def export(cfg: DictConfig) -> Path:
    """Write the deterministic model as TorchScript or ONNX, checked on a second batch size; return its path."""
    _check_cfg(cfg)
    module = load_module(cfg.ckpt_path)
    model = deterministic_net(module, str(cfg.ckpt_path))
    gen = torch.Generator().manual_seed(0)
    example, check = (torch.rand(b, *module.hparams.in_shape, generator=gen) for b in (TRACE_BATCH, CHECK_BATCH))
    if cfg.format == "torchscript":
        data, diffs = to_torchscript(model, example, check)
    else:
        data, diffs = to_onnx(model, example, check, int(cfg.opset))
    if diffs and max(diffs) > TOLERANCE:
        raise CheckpointError(
            f"the exported model differs from the checkpoint's by up to {max(diffs):.3g} on a batch of "
            f"{CHECK_BATCH}; nothing was written"
        )
    model_path, json_path = out_paths(cfg)
    info = sidecar(cfg, module, model, model_path, diffs)
    with open(model_path, "xb") as f:  # "x": never overwrite
        f.write(data)
    with open(json_path, "x") as f:
        json.dump(info, f, indent=2)
    checked = f"max |diff| to the checkpoint on a batch of {CHECK_BATCH}: {max(diffs):.2g}" if diffs else (
        "graph checked; install onnxruntime to compare outputs")  # fmt: skip
    print(f"wrote {model_path} ({cfg.format}; {checked})\nwrote {json_path} (input size, channels, classes)")
    return model_path


@hydra.main(config_path=CONF_DIR, config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(export, cfg)


if __name__ == "__main__":
    main()
