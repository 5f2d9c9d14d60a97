"""`python -m ram_lightning bench [quick=true] [device=cuda] [key=value ...]`: how fast RAM runs here.

Measures, on one device: the matmul peak, FLOPs per image, retina calls/s, training-step images/s (forward,
backward, Adam; no Trainer) for every paper setting and both cores, the same step with a per-sample-loop
retina, and batched canvas generation. Prints a table and writes everything as JSON.
"""

import json
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from .cli import run_reporting_errors
from .config import CONF_DIR
from .data.canvas import clutter, translate
from .errors import ConfigError
from .lit_module import RAMLitModule
from .paths import free_path
from .retina import Retina

# The paper's settings: canvas side, patch g, scales k, glimpses T (as in conf/experiment).
EXPERIMENTS = {
    "mnist": (28, 8, 1, 6),
    "translated60": (60, 12, 3, 6),
    "cluttered60": (60, 12, 3, 8),
    "cluttered100": (100, 12, 4, 8),
}
# Canvas generation: (name, canvas side, distractors); 0 distractors means a translated canvas.
CANVASES = (("translated60", 60, 0), ("cluttered60", 60, 4), ("cluttered100", 100, 8))
DISTRACTOR_SIZE, POOL_SIZE = 8, 1000
GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")


@dataclass
class Timing:
    repeats: int  # timed runs per measurement; the best and the median are kept
    warmup: int  # untimed calls first (allocator, caches, lazy init)
    min_time: float  # seconds each timed run lasts at least
    clock: Callable[[], float] = time.perf_counter  # process_time: CPU seconds, blind to other processes' load


class LoopRetina(nn.Module):
    """The per-sample design of the most used PyTorch port, kept as the reference the speed is compared to.

    For every sample and every scale: pad the image, cut the square with Python slicing, average-pool it;
    then stack. Same contract as :class:`Retina` (tests check they agree), so only the design differs.
    """

    def __init__(self, patch_size: int, num_scales: int = 1) -> None:
        super().__init__()
        self.g, self.k = patch_size, num_scales

    def forward(self, images: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        B, C, H, W = images.shape
        size = torch.tensor([W, H], dtype=torch.float32, device=l.device)
        centres = ((l.float() + 1) / 2 * size).tolist()  # (B, 2) pixel centres as Python floats
        patches = []
        for b in range(B):
            cx, cy = centres[b]
            scales = []
            for i in range(self.k):
                s = self.g * 2**i
                top, left = math.floor(cy - s / 2), math.floor(cx - s / 2)
                padded = F.pad(images[b], (s, s, s, s))  # zeros all round: any square near the image fits
                square = padded[:, top + s : top + 2 * s, left + s : left + 2 * s]  # (C, s, s)
                scales.append(F.avg_pool2d(square, 2**i) if i else square)  # (C, g, g)
            patches.append(torch.stack(scales))  # (k, C, g, g)
        return torch.stack(patches)  # (B, k, C, g, g)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but torch sees no CUDA device")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(fn: Callable[[], object], n: int, device: torch.device, clock: Callable[[], float]) -> float:
    """Seconds per call over n back-to-back calls."""
    _sync(device)
    t0 = clock()
    for _ in range(n):
        fn()
    _sync(device)
    return (clock() - t0) / n


def _time(fns: dict[str, Callable[[], object]], device: torch.device, t: Timing) -> dict[str, dict]:
    """Seconds per call of each function: best and median of ``t.repeats`` runs of about ``t.min_time`` s.

    The functions take turns run by run, so a burst of load from other processes hits them alike.
    """
    calls = {}
    for name, fn in fns.items():
        for _ in range(t.warmup):
            fn()
        calls[name] = max(1, math.ceil(t.min_time / _run(fn, 1, device, t.clock)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(t.repeats):
        for name, fn in fns.items():
            times[name].append(_run(fn, calls[name], device, t.clock))
    return {n: {"best_s": min(v), "median_s": statistics.median(v), "calls": calls[n]} for n, v in times.items()}


def matmul_peak(device: torch.device, n: int, t: Timing) -> float:
    """GFLOP/s of an n x n float32 matmul: the ceiling for the linear layers that dominate RAM's FLOPs."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    s = _time({"mm": lambda: a @ b}, device, t)["mm"]["best_s"]
    return 2 * n**3 / s / 1e9


def _lit(setting: str, core: str, compile: bool, device: torch.device) -> RAMLitModule:
    side, g, k, T = EXPERIMENTS[setting]
    net = {"kind": "ram", "patch_size": g, "num_scales": k, "num_glimpses": T, "core": core, "std": 0.1}
    return RAMLitModule(net, (1, side, side), compile=compile).to(device)


def _batch(setting: str, B: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    side = EXPERIMENTS[setting][0]
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(B, 1, side, side, generator=gen, device=device)  # (B, 1, S, S)
    return x, torch.randint(0, 10, (B,), generator=gen, device=device)


def train_step(lit: RAMLitModule, B: int, setting: str, bf16: bool, fused_adam: bool = False) -> Callable[[], None]:
    """One optimisation step of M=1 training, as the LitModule takes it but without the Trainer around it."""
    device = lit.device
    x, y = _batch(setting, B, device)
    if fused_adam:  # the same Adam as configure_optimizers, as one fused kernel
        opt = torch.optim.Adam(lit.parameters(), lr=lit.hparams.lr, fused=True)
    else:
        opt = lit.configure_optimizers()["optimizer"]
    gen = torch.Generator(device=device).manual_seed(1)

    def step() -> None:
        with record_function("forward"), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = lit(x, generator=gen)
            terms = lit.loss(out, y)
        with record_function("backward"):
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
        with record_function("optimizer"):
            opt.step()

    return step


def profile_step(cfg: DictConfig, device: torch.device) -> dict:
    """Where one training step's time goes, by torch.profiler: phases, the matmuls' share, the top ops by self time.

    Run with threads=1 to read the numbers as the time of one core.
    """
    setting, B, n = cfg.experiments[0], cfg.batches[0], 2 if cfg.quick else 10
    step = train_step(_lit(setting, "rnn", False, device), B, setting, False)
    for _ in range(3):
        step()
    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        for _ in range(n):
            step()
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / n / 1e3 for e in events if e.key in ("forward", "backward", "optimizer")}
    own = {e.key: (e.self_device_time_total if cuda else e.self_cpu_time_total) / n / 1e3 for e in events}
    own = {k: v for k, v in own.items() if k not in phases and v > 0}  # ms per step, kernels only on CUDA
    total = sum(own.values())
    top = sorted(own.items(), key=lambda kv: -kv[1])[:12]
    return {
        "experiment": setting,
        "core": "rnn",
        "batch": B,
        "phases_ms": phases,
        "op_ms": total,
        "matmul_share": sum(own.get(k, 0.0) for k in GEMMS) / total,
        "top": [{"op": k, "ms": v, "share": v / total} for k, v in top],
    }


def flops_per_image(setting: str, core: str) -> dict[str, float]:
    """FLOPs of one training image (forward + backward), counted by torch on CPU; the retina's share apart."""
    lit, B = _lit(setting, core, False, torch.device("cpu")), 4
    x, y = _batch(setting, B, torch.device("cpu"))
    with FlopCounterMode(display=False) as total:
        lit.loss(lit(x), y).loss.backward()
    side, g, k, T = EXPERIMENTS[setting]
    with FlopCounterMode(display=False) as retina:
        lit.net.retina(x, torch.zeros(B, 2))
    retina_flops = T * retina.get_total_flops() / B  # the retina runs forward only, once per glimpse
    return {"total": total.get_total_flops() / B, "retina": retina_flops}


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the process's peak so far


def bench_retina(cfg: DictConfig, device: torch.device, t: Timing) -> list[dict]:
    rows = []
    for setting in ("mnist", "translated60", "cluttered100"):
        side, g, k, _ = EXPERIMENTS[setting]
        retina = Retina(g, k).to(device)
        for B in cfg.retina_batches:
            x = torch.rand(B, 1, side, side, device=device)
            l = torch.rand(B, 2, device=device) * 2 - 1
            s = _time({"retina": lambda r=retina, x=x, l=l: r(x, l)}, device, t)["retina"]
            rows.append(
                {"image": f"{side}x{side}", "g": g, "k": k, "batch": B, "calls_per_s": 1 / s["best_s"]}
                | {"images_per_s": B / s["best_s"], "median_calls_per_s": 1 / s["median_s"]}
            )
    return rows


def _train_row(setting: str, core: str, B: int, s: dict, flops: dict, peak: float, extra: dict) -> dict:
    ips = B / s["best_s"]
    model_flops = flops["total"] - flops["retina"]
    return {
        "experiment": setting,
        "core": core,
        "batch": B,
        **extra,
        "images_per_s": ips,
        "median_images_per_s": B / s["median_s"],
        "ms_per_step": 1e3 * s["best_s"],
        "gflops_per_s": model_flops * ips / 1e9,
        "fraction_of_peak": model_flops * ips / (peak * 1e9),
        "load": os.getloadavg()[0],
    }


def bench_train(cfg: DictConfig, device: torch.device, t: Timing, peak: float, flops: dict) -> list[dict]:
    rows = []
    precisions = ["fp32", "bf16"] if _bf16(cfg, device) else ["fp32"]
    for setting in cfg.experiments:
        for core in cfg.cores:
            for B in cfg.batches:
                for precision in precisions:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    lit = _lit(setting, core, False, device)
                    step = train_step(lit, B, setting, precision == "bf16")
                    s = _time({"step": step}, device, t)["step"]
                    extra = {"precision": precision, "compiled": False, "peak_mem_mb": _memory_mb(device)}
                    rows.append(_train_row(setting, core, B, s, flops[setting, core], peak, extra))
    return rows


def bench_loop(cfg: DictConfig, device: torch.device, t: Timing) -> list[dict]:
    """The training step with the vectorised retina and with the per-sample loop, timed in turns.

    With ``compile`` the vectorised network is also timed under torch.compile (the loop cannot be compiled:
    it reads every location on the host).
    """
    rows = []
    B = cfg.loop_batch
    for setting in cfg.loop_experiments:
        _, g, k, _ = EXPERIMENTS[setting]
        fast, loop = _lit(setting, "rnn", False, device), _lit(setting, "rnn", False, device)
        loop.net.retina = LoopRetina(g, k)
        steps = {"vectorised": train_step(fast, B, setting, False), "loop": train_step(loop, B, setting, False)}
        if cfg.compile:
            steps["compiled"] = train_step(_lit(setting, "rnn", True, device), B, setting, False)
        s = {name: B / v["best_s"] for name, v in _time(steps, device, t).items()}  # images/s
        row = {"experiment": setting, "core": "rnn", "batch": B, "vectorised_images_per_s": s["vectorised"]}
        row |= {"loop_images_per_s": s["loop"], "ratio": s["vectorised"] / s["loop"]}
        if cfg.compile:
            row |= {"compiled_images_per_s": s["compiled"], "ratio_compiled": s["compiled"] / s["loop"]}
        rows.append(row | {"load": os.getloadavg()[0]})
    return rows


def bench_canvas(cfg: DictConfig, device: torch.device, t: Timing) -> list[dict]:
    B = cfg.canvas_batch
    gen = torch.Generator(device=device).manual_seed(0)
    digits = torch.randint(0, 256, (B, 28, 28), generator=gen, device=device, dtype=torch.uint8)
    pool = torch.randint(0, 256, (POOL_SIZE, 28, 28), generator=gen, device=device, dtype=torch.uint8)
    rows = []
    for name, side, K in CANVASES:
        if K:
            fn = lambda side=side, K=K: clutter(digits, pool, side, K, DISTRACTOR_SIZE, gen)  # noqa: E731
        else:
            fn = lambda side=side: translate(digits, side, gen)  # noqa: E731
        s = _time({name: fn}, device, t)[name]
        rows.append({"canvas": name, "side": side, "distractors": K, "batch": B, "images_per_s": B / s["best_s"]})
    return rows


def bench_options(cfg: DictConfig, device: torch.device, t: Timing, peak: float, flops: dict) -> list[dict]:
    """Optional speed-ups against the plain step, in turns: a fused Adam and, if asked, torch.compile."""
    rows = []
    setting, B = cfg.experiments[0], cfg.batches[0]
    for core in cfg.cores:
        steps = {"eager": train_step(_lit(setting, core, False, device), B, setting, False)}
        steps["fused_adam"] = train_step(_lit(setting, core, False, device), B, setting, False, fused_adam=True)
        if cfg.compile:
            compiled = _lit(setting, core, True, device)
            t0 = time.perf_counter()
            steps["compiled"] = train_step(compiled, B, setting, False)
            steps["compiled"]()  # compiles here, so the time is reported apart
            compile_s = time.perf_counter() - t0
        s = _time(steps, device, t)
        for name, v in s.items():
            extra = {"variant": name, "gain": s["eager"]["best_s"] / v["best_s"]}
            if name == "compiled":
                extra["compile_s"] = compile_s
            rows.append(_train_row(setting, core, B, v, flops[setting, core], peak, extra))
    return rows


def _bf16(cfg: DictConfig, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.bf16 == "auto" else bool(cfg.bf16)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE keeps 2 threads usable on a busy CPU
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _out_path(cfg: DictConfig) -> Path:
    default = Path(cfg.paths.log_dir) / "bench" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}.json"
    return free_path(Path(cfg.out) if cfg.out else default)  # never overwrite an earlier measurement


def _timing(cfg: DictConfig, device: torch.device) -> Timing:
    clock = time.perf_counter
    if cfg.clock == "cpu":
        if device.type != "cpu" or torch.get_num_threads() != 1:
            raise ConfigError("clock=cpu counts this process's CPU seconds: it needs device=cpu and threads=1")
        clock = time.process_time
    elif cfg.clock != "wall":
        raise ConfigError(f"clock must be wall or cpu, got {cfg.clock!r}")
    if cfg.quick:  # a smoke run: every measurement once
        return Timing(repeats=1, warmup=1, min_time=0.0, clock=clock)
    return Timing(repeats=int(cfg.repeats), warmup=int(cfg.warmup), min_time=float(cfg.min_time), clock=clock)


def bench(cfg: DictConfig) -> dict:
    """Run every measurement that ``cfg`` asks for; print a table; write and return the results."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = _device(cfg.device)
    t = _timing(cfg, device)
    result: dict = {"machine": _machine(device), "config": _plain(cfg), "load_start": os.getloadavg()}
    peak = matmul_peak(device, 512 if cfg.quick else cfg.matmul_size, t)
    result["matmul_gflops_per_s"] = peak
    settings = dict.fromkeys([*cfg.experiments, *cfg.loop_experiments])  # in order, once each
    flops = {(s, c): flops_per_image(s, c) for s in settings for c in cfg.cores}
    result["flops_per_image"] = [{"experiment": s, "core": c, **v} for (s, c), v in flops.items()]
    result["retina"] = bench_retina(cfg, device, t)
    result["train"] = bench_train(cfg, device, t, peak, flops)
    result["loop"] = bench_loop(cfg, device, t)
    result["canvas"] = bench_canvas(cfg, device, t)
    result["options"] = bench_options(cfg, device, t, peak, flops)
    if cfg.profile:
        result["profile"] = profile_step(cfg, device)
    result["peak_mem_mb"] = _memory_mb(device)
    result["load_end"] = os.getloadavg()
    path = _out_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"\nwritten: {path}")
    result["path"] = str(path)
    return result


def _plain(cfg: DictConfig) -> dict:
    plain = OmegaConf.to_container(cfg)  # unresolved: paths may name Hydra's run folder, absent under compose
    plain.pop("paths", None)
    return plain


def report(r: dict) -> str:
    """The results as plain-text tables."""
    m = r["machine"]
    lines = [
        f"{m['cpu']}, {m['cpu_count']} cores, {m['threads']} threads, torch {m['torch']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else ""),
        f"clock {r['config']['clock']}; load average at start {r['load_start'][0]:.2f}, at end {r['load_end'][0]:.2f}",
        f"matmul peak: {r['matmul_gflops_per_s']:.0f} GFLOP/s",
        "",
        f"{'experiment':<14}{'core':<6}{'MFLOP/img':>10}{'retina':>8}",
    ]
    lines += [
        f"{f['experiment']:<14}{f['core']:<6}{f['total'] / 1e6:>10.2f}{f['retina'] / 1e6:>8.2f}"
        for f in r["flops_per_image"]
    ]
    lines += ["", f"{'retina':<10}{'g':>4}{'k':>3}{'batch':>7}{'calls/s':>10}{'images/s':>12}"]
    lines += [
        f"{x['image']:<10}{x['g']:>4}{x['k']:>3}{x['batch']:>7}{x['calls_per_s']:>10.0f}{x['images_per_s']:>12.0f}"
        for x in r["retina"]
    ]
    head = f"{'experiment':<14}{'core':<6}{'batch':>6}{'prec':>6}{'images/s':>10}{'ms/step':>9}{'peak %':>8}{'MB':>8}"
    lines += ["", "training step (forward, backward, Adam; M=1)", head]
    lines += [
        f"{x['experiment']:<14}{x['core']:<6}{x['batch']:>6}{x['precision']:>6}{x['images_per_s']:>10.0f}"
        f"{x['ms_per_step']:>9.1f}{100 * x['fraction_of_peak']:>8.1f}{x['peak_mem_mb']:>8.0f}"
        for x in r["train"]
    ]
    lines += ["", "vectorised retina vs per-sample loop, same model and step", f"{'experiment':<14}{'batch':>6}"
              f"{'vectorised':>12}{'loop':>10}{'ratio':>8}"]  # fmt: skip
    lines += [
        f"{x['experiment']:<14}{x['batch']:>6}{x['vectorised_images_per_s']:>12.0f}{x['loop_images_per_s']:>10.0f}"
        f"{x['ratio']:>8.2f}"
        + (f"   compiled {x['compiled_images_per_s']:.0f}: {x['ratio_compiled']:.2f}" if "ratio_compiled" in x else "")
        for x in r["loop"]
    ]
    lines += ["", f"{'canvas':<14}{'batch':>6}{'images/s':>12}"]
    lines += [f"{x['canvas']:<14}{x['batch']:>6}{x['images_per_s']:>12.0f}" for x in r["canvas"]]
    lines += ["", f"{'option':<12}{'experiment':<14}{'core':<6}{'batch':>6}{'images/s':>10}{'gain':>7}"]
    lines += [
        f"{x['variant']:<12}{x['experiment']:<14}{x['core']:<6}{x['batch']:>6}{x['images_per_s']:>10.0f}"
        f"{x['gain']:>7.2f}" + (f"  (compiled in {x['compile_s']:.0f} s)" if "compile_s" in x else "")
        for x in r["options"]
    ]
    if "profile" in r:
        p = r["profile"]
        phases = ", ".join(f"{k} {v:.1f} ms" for k, v in p["phases_ms"].items())
        share = f"matmuls {100 * p['matmul_share']:.0f} % of {p['op_ms']:.1f} ms in ops; top ops by self time:"
        lines += ["", f"profile of one step ({p['experiment']}, {p['core']}, batch {p['batch']}): {phases}", share]
        lines += [f"  {x['op'][:52]:<52}{x['ms']:>8.2f} ms{100 * x['share']:>6.1f} %" for x in p["top"]]
    return "\n".join(lines)


@hydra.main(config_path=CONF_DIR, config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(bench, cfg)
