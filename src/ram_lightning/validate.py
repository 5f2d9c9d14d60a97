"""Checks on a composed config that Hydra cannot make: each failure names the key and what is allowed."""

from omegaconf import DictConfig

from .errors import ConfigError
from .lit_module import LR_SCHEDULES, NETS
from .losses import BASELINES, REWARDS
from .model import FIRST_LOCATIONS
from .modules import CORES


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    """Raise a ConfigError naming ``key``, its ``value`` and what is ``allowed``, unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate_model(model: DictConfig, canvas: tuple[int, int]) -> None:
    """``model`` is the composed `model` group; ``canvas`` the input's (H, W)."""
    net = model.net
    require(net.kind in NETS, "model.net.kind", net.kind, f"choose one of {', '.join(NETS)}")
    for key in ("mc_train", "mc_eval"):
        require(int(model[key]) >= 1, f"model.{key}", model[key], "must be >= 1")
    require(float(model.lr) > 0, "model.lr", model.lr, "must be > 0")
    require(float(model.policy_lr_scale) > 0, "model.policy_lr_scale", model.policy_lr_scale, "must be > 0")
    smoothing = model.get("label_smoothing", 0.0)
    ok = isinstance(smoothing, (int, float)) and 0 <= smoothing < 1
    require(ok, "model.label_smoothing", smoothing, "must be in [0, 1)")
    distill = model.get("distill_weight", 0.0)
    ok = isinstance(distill, (int, float)) and distill >= 0 and (distill == 0 or int(model.mc_train) >= 2)
    require(ok, "model.distill_weight", distill, "must be >= 0, and > 0 only with model.mc_train >= 2")
    baseline = model.get("baseline", "learned")
    ok = baseline in BASELINES and (baseline != "copies" or int(model.mc_train) >= 2)
    allowed = f"choose one of {', '.join(BASELINES)}; copies only with model.mc_train >= 2"
    require(ok, "model.baseline", baseline, allowed)
    reward = model.get("reward", "correct")
    require(reward in REWARDS, "model.reward", reward, f"choose one of {', '.join(REWARDS)}")
    require(model.lr_schedule in LR_SCHEDULES, "model.lr_schedule", model.lr_schedule,
             f"choose one of {', '.join(LR_SCHEDULES)}")  # fmt: skip
    dropout = net.get("dropout", 0.0)
    ok = isinstance(dropout, (int, float)) and 0 <= dropout < 1  # text from the command line is refused too
    require(ok, "model.net.dropout", dropout, "must be in [0, 1)")
    if net.kind != "ram":
        return
    require(net.core in CORES, "model.net.core", net.core, f"choose one of {', '.join(CORES)}")
    require(net.first_location in FIRST_LOCATIONS, "model.net.first_location", net.first_location,
             f"choose one of {', '.join(FIRST_LOCATIONS)}")  # fmt: skip
    require(int(net.num_glimpses) >= 1, "model.net.num_glimpses", net.num_glimpses, "must be >= 1")
    require(int(net.num_scales) >= 1, "model.net.num_scales", net.num_scales, "must be >= 1")
    require(int(net.patch_size) >= 1, "model.net.patch_size", net.patch_size, "must be >= 1")
    require(float(net.std) > 0, "model.net.std", net.std, "the location std must be > 0")
    for key in ("locator_hidden", "glimpse_hidden", "classifier_hidden"):
        width = net.get(key, 0)
        ok = isinstance(width, int) and not isinstance(width, bool) and width >= 0
        require(ok, f"model.net.{key}", width, "must be an integer >= 0")
    for key in ("locator_reads_location", "locator_reads_glimpse"):
        reads = net.get(key, False)
        require(isinstance(reads, bool), f"model.net.{key}", reads, "must be true or false")
    largest = int(net.patch_size) * 2 ** (int(net.num_scales) - 1)
    require(
        largest <= 2 * max(canvas),
        "model.net.patch_size",
        net.patch_size,
        f"with num_scales={net.num_scales} the largest patch is {largest} px, more than twice the "
        f"{canvas[0]}x{canvas[1]} input; use a smaller patch_size or fewer scales",
    )
