"""The export command: TorchScript and ONNX files that match the checkpoint and run without this package."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ckpt_utils import MNIST_RECIPE, TINY_NET, save_untrained, train_on_folder
from conftest import compose_cfg, write_shapes_folder
from ram_lightning.checkpoint import load_module
from ram_lightning.errors import CheckpointError, ConfigError
from ram_lightning.export import export

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:FutureWarning")

# Loads the TorchScript file in a new interpreter that has imported torch and nothing of ours.
FRESH_LOAD = """
import sys, torch
model = torch.jit.load(sys.argv[1])
logits, locations = model(torch.load(sys.argv[2]))
torch.save({"logits": logits, "locations": locations}, sys.argv[3])
ours = [m for m in sys.modules if m.split(".")[0] in ("ram_lightning", "pytorch_lightning", "lightning", "hydra")]
assert not ours, ours
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("trained")
    return train_on_folder(write_shapes_folder(base / "shapes"), base / "run")


def export_cfg(ckpt: Path, fmt: str, out: Path | None = None):
    cfg = compose_cfg("export", [f"format={fmt}"])
    cfg.ckpt_path, cfg.out = str(ckpt), None if out is None else str(out)
    return cfg


def reference(ckpt: Path, B: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of another size than the trace's, and the checkpoint's own deterministic answer to it."""
    module = load_module(ckpt)
    x = torch.rand(B, *module.hparams.in_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = module(x, deterministic=True)
    return x, out.logits, out.locations


def test_torchscript_loads_in_a_fresh_process_and_matches_the_checkpoint(ckpt, tmp_path) -> None:
    path = export(export_cfg(ckpt, "torchscript"))
    assert path == ckpt.with_suffix(".pt")  # beside the checkpoint by default
    x, logits, locations = reference(ckpt)
    torch.save(x, tmp_path / "x.pt")
    res = subprocess.run([sys.executable, "-c", FRESH_LOAD, str(path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    got = torch.load(tmp_path / "y.pt")
    assert got["locations"].shape == (5, 2, 2)  # (B, T, 2)
    assert (got["logits"] - logits).abs().max() <= 1e-5 and (got["locations"] - locations).abs().max() <= 1e-5
    info = json.loads(Path(f"{path}.json").read_text())
    assert info["classes"] == ["left", "right"] and info["input"]["shape"] == ["batch", 1, 24, 24]
    assert info["recipe"]["image_size"] == 24 and info["check"]["max_abs_diff_logits_locations"] == [0.0, 0.0]
    again = export(export_cfg(ckpt, "torchscript"))  # never overwrites: a new name, with its own sidecar
    assert again.name == f"{ckpt.stem}_1.pt" and Path(f"{again}.json").is_file()


def test_onnx_runs_in_onnxruntime_and_matches_the_checkpoint(ckpt, tmp_path) -> None:
    pytest.importorskip("onnx", reason="ONNX export needs the [onnx] extra")
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the [onnx] extra")
    path = export(export_cfg(ckpt, "onnx", tmp_path / "ram.onnx"))
    x, logits, locations = reference(ckpt)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_logits, got_locations = session.run(["logits", "locations"], {"x": x.numpy()})
    assert (torch.from_numpy(got_logits) - logits).abs().max() <= 1e-5
    assert (torch.from_numpy(got_locations) - locations).abs().max() <= 1e-5
    assert json.loads((tmp_path / "ram.onnx.json").read_text())["opset"] == 17


def test_uniform_first_location_is_exported_as_the_centre_with_a_warning(tmp_path) -> None:
    ckpt = save_untrained(tmp_path / "u.ckpt", MNIST_RECIPE, {**TINY_NET, "first_location": "uniform"})
    with pytest.warns(UserWarning, match="starts at the centre"):
        path = export(export_cfg(ckpt, "torchscript"))
    _, locations = torch.jit.load(path)(torch.rand(4, 1, 40, 40))
    assert (locations[:, 0] == 0).all() and locations.shape == (4, 3, 2)
    info = json.loads(Path(f"{path}.json").read_text())
    assert info["first_location"] == "center" and info["classes"] == [str(d) for d in range(10)]


def test_comparison_models_export_with_no_locations(tmp_path) -> None:
    ckpt = save_untrained(tmp_path / "fc.ckpt", MNIST_RECIPE, {"kind": "fc", "hidden": 8})
    logits, locations = torch.jit.load(export(export_cfg(ckpt, "torchscript")))(torch.rand(3, 1, 40, 40))
    assert logits.shape == (3, 10) and locations.shape == (3, 0, 2)


def test_what_cannot_be_exported_is_refused(tmp_path) -> None:
    ckpt = save_untrained(tmp_path / "r.ckpt", MNIST_RECIPE, {**TINY_NET, "random_glimpses": True})
    with pytest.raises(CheckpointError, match="random-glimpse ablation"):
        export(export_cfg(ckpt, "torchscript"))
    with pytest.raises(ConfigError, match="format='tflite' is not allowed"):
        export(export_cfg(ckpt, "tflite"))
    assert not list(tmp_path.glob("r*.pt*"))
