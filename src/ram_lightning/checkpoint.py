"""Loading checkpoints safely: tensors and plain values only, rebuilt from our own classes."""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from .errors import CheckpointError
from .lit_module import FORMAT_KEY, FORMAT_VERSION, RAMLitModule


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint's contents; never unpickles anything but tensors and plain containers. ``key`` is the
    option that named it, for the error message."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p} (pass {key}=<an existing .ckpt file>)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]  # a disallowed class or function
        if not found:
            raise CheckpointError(f"{p} is not a readable checkpoint (not a PyTorch file): {str(err)[:200]}") from None
        raise CheckpointError(
            f"refused to load {p}: it holds pickled objects other than tensors and plain values, which could "
            f"run code on this machine; nothing in it was executed ({found[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{p} is not a readable checkpoint (truncated or not a PyTorch file): {err}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{p} is not a Lightning checkpoint (no state_dict / hyper_parameters)")
    return ckpt


def load_module(path: str | Path) -> RAMLitModule:
    """Rebuild the RAMLitModule from the checkpoint alone, on CPU, whatever device saved it."""
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    version = ckpt.get(FORMAT_KEY)
    if not isinstance(hp, dict) or "net" not in hp or version is None:
        raise CheckpointError(f"{path} was not written by ram-lightning (no '{FORMAT_KEY}' or 'net' entry)")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this version of ram-lightning reads format {FORMAT_VERSION}"
        )
    try:
        module = RAMLitModule(**hp)
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not match a ram-lightning model: {str(err).splitlines()[0]}") from None
    return module.eval()


def load_weights(module: RAMLitModule, path: str | Path, strict: bool = True) -> list[str]:
    """Copy the weights of the checkpoint at ``path`` into ``module`` (fine-tuning: the optimiser, the
    schedule and the epoch count start afresh). The two networks must have the same shapes; with
    ``strict=False`` the module may have weights the checkpoint lacks, which keep their initialisation, and
    a wider core (see ``grow_hidden``). Returns the names of the weights the checkpoint lacks."""
    ckpt = read_checkpoint(path, key="init_from")
    ours = module.state_dict()
    theirs = ckpt["state_dict"] if strict else grow_hidden(ckpt["state_dict"], ours)
    missing = sorted(ours.keys() - theirs.keys())
    problems = _mismatches(theirs, ours, missing if strict else [])
    if any(problems.values()):
        found = "; ".join(f"{what}: {', '.join(keys[:3])}" for what, keys in problems.items() if keys)
        net = ckpt["hyper_parameters"].get("net", {})
        # what init_strict=false would accept: weights the checkpoint lacks, and a wider core
        lenient = strict and not any(_mismatches(grow_hidden(theirs, ours), ours, []).values())
        or_lenient = (
            ", or init_strict=false to start what it lacks (new parts, new core units) afresh" if lenient else ""
        )
        raise CheckpointError(
            f"init_from={path} does not fit the configured network ({found}); its network was "
            f"{net}: set the same model.net.* options{or_lenient}"
        )
    module.load_state_dict(theirs, strict=False)
    return missing


def _mismatches(theirs: dict, ours: dict, missing: list[str]) -> dict[str, list[str]]:
    return {
        "missing": missing,
        "not in this model": sorted(theirs.keys() - ours.keys()),
        "other shapes (checkpoint vs config)": [
            f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
            if k in theirs and theirs[k].shape != v.shape
        ],
    }  # fmt: skip


def grow_hidden(
    theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], prefix: str = "net."
) -> dict[str, torch.Tensor]:
    """``theirs`` with its core widened to ``ours``' h_t size where ours is larger, the model unchanged.

    The checkpoint's units keep their weights (LSTM gates block by block), the new units keep ``ours``'
    random initialisation, and every weight that reads a new unit of h_t from an old unit or a head starts at
    zero: the grown network computes what the checkpoint's did, and the new units learn from the first step.
    ``prefix`` is where the network's keys start (the LightningModule's ``net.``). Other shapes pass unchanged.
    """
    key = f"{prefix}classifier.weight"  # (classes, h_t size) in a RAM; the comparison models have none
    if key not in theirs or key not in ours or not theirs[key].shape[1] < ours[key].shape[1]:
        return theirs
    old, new = theirs[key].shape[1], ours[key].shape[1]
    grown = dict(theirs)
    for k, a in theirs.items():
        b = ours.get(k)
        if b is None or a.shape == b.shape:
            continue
        # a weight reading h_t (a head, or the core's h_{t-1} -> gates) gets zero columns for the new units
        reads_h = a.dim() == 2 and (a.shape[1], b.shape[1]) == (old, new)
        if k.startswith(f"{prefix}core.") and a.shape[0] * new == b.shape[0] * old:
            if a.dim() == 2 and not reads_h and a.shape[1] != b.shape[1]:
                continue  # its input changed too: left for load_weights to refuse
            blocks = b.shape[0] // new  # rows are units: 4 gate blocks for the LSTM, 1 for the RNN
            out = b.clone().view(blocks, new, *b.shape[1:])
            out[:, :old] = (F.pad(a, (0, new - old)) if reads_h else a).view(blocks, old, *b.shape[1:])
            grown[k] = out.view(b.shape)
        elif reads_h and a.shape[0] == b.shape[0]:
            grown[k] = F.pad(a, (0, new - old))
    return grown


SHIPPED_KEYS = ("state_dict", "hyper_parameters", FORMAT_KEY, "epoch", "global_step", "pytorch-lightning_version")


def slim_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint without optimiser and loop state (a third of the size): enough for eval, render,
    predict and export, not for resuming. Never overwrites ``dst``."""
    ckpt = read_checkpoint(src)
    dst = Path(dst)
    if dst.exists():
        raise CheckpointError(f"{dst} exists; refusing to overwrite it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: ckpt[k] for k in SHIPPED_KEYS if k in ckpt}, dst)
    return dst
