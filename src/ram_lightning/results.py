"""Collect finished runs into the results table: `python -m ram_lightning.results [--quick]`.

`make results` (or `make results-quick`) trains the rows with Hydra multiruns under outputs/results/,
then calls this to write docs/results.md (docs/results_quick.md). Only real runs fill our columns.
"""

import argparse
import json
import shlex
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from .checkpoint import slim_checkpoint


@dataclass(frozen=True)
class Row:
    experiment: str
    glimpses: int | None  # None for the comparison models
    paper: str  # the paper's test error (NIPS camera-ready), "-" where our reference does not carry it
    best_public: str  # the best public re-implementation's number, with its source
    first_location: str | None = "uniform"  # where every glimpse path starts; None for the comparison models

    @property
    def key(self) -> tuple[str, int | None, str | None]:
        return self.experiment, self.glimpses, self.first_location

    @property
    def label(self) -> str:
        if self.glimpses is None:
            return self.experiment
        start = ", centred first glimpse" if self.first_location == "center" else ""
        return f"{self.experiment}, {self.glimpses} glimpses{start}"


ROWS = [
    *(Row("mnist", t, {6: "1.12", 7: "1.07"}.get(t, "-"), {6: "0.78 (seed)", 7: "0.85 (Torch rnn)"}.get(t, "-"))
      for t in range(2, 8)),
    *(Row("translated60", t, {6: "1.22", 8: "1.2"}.get(t, "-"), {6: "1.19 (seed)", 8: "0.94 (tfRAM)"}.get(t, "-"))
      for t in (4, 6, 8)),
    Row("translated60", 8, "1.2", "0.94 (tfRAM)", "center"),
    *(Row("cluttered60", t, {8: "4.04"}.get(t, "-"), {8: "2.63 (tfRAM)"}.get(t, "-")) for t in (4, 6, 8)),
    Row("cluttered60", 8, "4.04", "2.63 (tfRAM)", "center"),
    Row("cluttered60_random", 8, "14.4", "-"),
    *(Row("cluttered100", t, {8: "8.11"}.get(t, "-"), {8: "5.9 (tfRAM)"}.get(t, "-")) for t in (4, 6, 8)),
    Row("cluttered100", 8, "8.11", "5.9 (tfRAM)", "center"),
    Row("fc_mnist", None, "-", "-", None),
    Row("conv_mnist", None, "1.21", "-", None),
    Row("fc_cluttered60", None, "-", "-", None),
    Row("conv_translated60", None, "1.62", "-", None),
    Row("conv_cluttered60", None, "8.09", "-", None),
    Row("conv_cluttered100", None, "14.35", "-", None),
]  # fmt: skip
# One row per data set, at its experiment's own first glimpse (a test holds them to the configs).
HEADLINE = {("mnist", 6, "uniform"), ("translated60", 8, "center"), ("cluttered60", 8, "center"),
            ("cluttered100", 8, "center")}  # fmt: skip


@dataclass
class Run:
    folder: Path
    experiment: str
    glimpses: int | None
    first_location: str | None  # None for the comparison models
    quick: bool
    short: bool  # trained at a shorter schedule than its experiment's config (tag "short")
    metrics: dict
    command: str

    @property
    def key(self) -> tuple[str, int | None, str | None]:
        """The key of the row this run fills (see Row.key)."""
        return self.experiment, self.glimpses, self.first_location


def read_run(folder: Path) -> Run | None:
    """The finished training run in ``folder`` (metrics.json and Hydra's .hydra/), or None."""
    metrics_file, hydra = folder / "metrics.json", folder / ".hydra"
    if not (metrics_file.is_file() and (hydra / "overrides.yaml").is_file() and (hydra / "config.yaml").is_file()):
        return None
    cfg = OmegaConf.load(hydra / "config.yaml")
    overrides = list(OmegaConf.load(hydra / "overrides.yaml"))
    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "mnist")
    ram = cfg.model.net.kind == "ram"
    glimpses, first_location = (cfg.model.net.num_glimpses, cfg.model.net.first_location) if ram else (None, None)
    if ram and not any(o.startswith("model.net.first_location=") for o in overrides):
        # named even where it was the default: a default that moves later must not change what the command trains
        overrides.append(f"model.net.first_location={first_location}")
    command = "python -m ram_lightning train " + " ".join(
        shlex.quote(o) for o in overrides if not o.startswith("paths.")
    )
    tags, metrics = cfg.get("tags") or [], json.loads(metrics_file.read_text())
    return Run(folder, experiment, glimpses, first_location, "quick" in tags, "short" in tags, metrics, command)


def find_runs(root: Path) -> list[Run]:
    """Every finished training run below ``root``, oldest first (by when it finished): a row's last is its latest."""
    files = sorted(root.rglob("metrics.json"), key=lambda f: f.stat().st_mtime)
    return [run for f in files if (run := read_run(f.parent)) is not None]


def _cell(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.2f}" if key in metrics else "-"


# Our three test errors: one sampled path, the mean of 10, and the path that follows the policy mean.
ERRORS = {"M=1": "test/err", "M=10": "test/err_mc", "policy mean": "test/err_deterministic"}


def _beaten(metrics: dict, target: str, what: str) -> str:
    """Which of our errors beat ``target`` (a number, then its source; "-" for none), as a table note."""
    if target == "-":
        return ""
    ours = {name: metrics[key] for name, key in ERRORS.items() if key in metrics}
    beats = [name for name, err in ours.items() if err < float(target.split()[0])]
    if not beats:
        return ""
    return f"beats {what}" if len(beats) == len(ours) else f"beats {what} with {' and '.join(beats)} only"


def _status(row: Row, metrics: dict) -> str:
    """Our errors against the paper's (which averaged no Monte Carlo samples) and the best public one's."""
    if "test/err_mc" not in metrics:
        return "not run yet"
    if row.paper == "-":
        return ""
    paper = _beaten(metrics, row.paper, "the paper") or "**does not beat the paper yet**"
    return "; ".join(filter(None, [paper, _beaten(metrics, row.best_public, "the best public")]))


def rows(quick: bool) -> list[Row]:
    """The rows of the full table, or the headline rows of the quick one."""
    return [row for row in ROWS if not quick or row.key in HEADLINE]


def latest(runs: list[Run], quick: bool) -> dict[Row, Run]:
    """The run that fills each row of the table: the row's latest. Runs that fit no row are left out."""
    last = {r.key: r for r in runs if r.quick == quick}
    return {row: last[row.key] for row in rows(quick) if row.key in last}


def table(runs: list[Run], quick: bool) -> str:
    columns = ["setting", "test err M=1", "test err M=10", "policy mean", "epochs", "wall time", "hardware", "paper",
               "best public", ""]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    shown = latest(runs, quick)
    for row in rows(quick):
        run = shown.get(row)
        m = run.metrics if run else {}
        resumed = run is not None and "ckpt_path=" in run.command
        wall = "resumed run" if resumed else f"{m['fit_seconds'] / 60:.1f} min" if "fit_seconds" in m else "-"
        label = f"**{row.label}**" if row.key in HEADLINE else row.label
        notes = [
            "short schedule" if run is not None and run.short and not quick else "",
            # a fine-tuned run's epochs and time add to the earlier run's
            "fine-tuned from an earlier run's weights (see its command)" if run and "init_from=" in run.command else "",
            "resumed from a stopped run's checkpoint (see its command)" if resumed else "",
            _status(row, m),
        ]
        status = "; ".join(filter(None, notes))
        hardware = m.get("hardware", "-") + (", tested on CPU" if "device_test" in m else "")
        cells = [label, *(_cell(m, key) for key in ERRORS.values()), str(m.get("epochs", "-")), wall,
                 hardware, row.paper, row.best_public, status]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commands(runs: list[Run], quick: bool) -> str:
    return "\n".join(f"    {r.command}" for r in latest(runs, quick).values()) or "    (no finished runs yet)"


def report(root: Path, quick: bool) -> str:
    runs = find_runs(root)
    title = "Results, quick schedule" if quick else "Results"
    minutes = sum(r.metrics.get("fit_seconds", 0) for r in latest(runs, quick=True).values()) / 60
    note = (
        f"These rows ran at a SHORT schedule (`make results-quick`; their training took {minutes:.0f} minutes, summed "
        "over the runs); they show that the pipeline runs end to end, not the paper's final numbers."
        if quick
        else "Every number in our columns comes from a finished run below `outputs/results/` (test error in %, "
        "the checkpoint with the best `val/err_mc` within a run; where several runs fill a headline row, the one whose "
        "checkpoint has the lowest one-path validation error, `val_err_per_path` of `eval split=val`). "
        "M=1 samples one glimpse path, M=10 averages the softmax of 10; "
        "policy mean follows the mean of the location policy after the first glimpse (none for models "
        "without one). Rows marked short schedule "
        "(runs tagged `short`) trained at a cheaper setting than their experiment's config: their command says which. "
        "On 10 000 test images an error near 1 % carries about 0.1 points of sampling noise (one standard error), "
        "one near 4 % about 0.2: a row that beats a number by less is level with it."
    )
    notes = Path(__file__).resolve().parents[2] / "docs" / "results_notes.md"
    extra = notes.read_text() if notes.is_file() and not quick else ""
    return (
        f"# {title}\n\n_Generated by `python -m ram_lightning.results{' --quick' if quick else ''}` on "
        f"{datetime.now():%Y-%m-%d %H:%M}._\n\n{note}\n\n{table(runs, quick)}\n\n"
        f"Paper: Mnih et al. 2014, NIPS camera-ready. Headline rows in bold.\n\n"
        f"## Commands of the runs in the table\n\n{commands(runs, quick)}\n\n{extra}"
    )


def best_checkpoint(run: Run) -> Path:
    """The run's best checkpoint, looked for in the run's own folder first: a run copied back from another
    machine (a GPU node, a cluster) records that machine's absolute path."""
    recorded = Path(run.metrics["best_ckpt"])
    local = run.folder / "checkpoints" / recorded.name
    return local if local.is_file() else recorded


def cpu_test(ckpt: Path, data_dir: str = "data") -> dict:
    """`python -m ram_lightning eval` of ``ckpt`` on the CPU: the figures a shipped checkpoint must reproduce
    (a GPU draws the evaluation noise from another generator, so its figures differ slightly)."""
    from hydra import compose, initialize_config_dir

    from .config import CONF_DIR
    from .evaluate import evaluate

    overrides = [f"ckpt_path={ckpt}", f"paths.data_dir={data_dir}", "accelerator=cpu"]
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return evaluate(compose("eval", [*overrides, f"out={tmp}/report.json"]))


def retest(run_dir: Path, data_dir: str = "data") -> dict:
    """Test a run's best checkpoint again on the CPU and make those its test errors in metrics.json, so the
    table, `--ship` and `eval` of the shipped file agree. The run's own figures are kept under "device_test"."""
    run = read_run(run_dir)
    if run is None or not run.metrics.get("best_ckpt"):
        raise SystemExit(f"{run_dir} is not a finished training run with a best checkpoint")
    metrics = dict(run.metrics)
    got = cpu_test(best_checkpoint(run), data_dir)
    # A model without a location policy gives no policy-mean figure (None): the run then keeps none either.
    tested = {key: value for key in ERRORS.values() if (value := got[key.replace("/", "_")]) is not None}
    own = {k: metrics[k] for k in ("test/err", "test/err_mc", "hardware") if k in metrics}
    if any(abs(own.get(key, -1.0) - tested[key]) > 1e-6 for key in ("test/err", "test/err_mc")):
        metrics.setdefault("device_test", own)  # the run's own figures differ (another device): keep them
    metrics = {k: v for k, v in metrics.items() if k not in ERRORS.values()} | tested | {"test_device": "cpu"}
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(run_dir / "metrics.json")
    return metrics


# A run's metrics.json holds the last epoch's val/* figures, not the shipped checkpoint's: left out.
# device_test: a GPU run's own test figures, where `--retest` replaced them with the CPU's.
RECORD_KEYS = ("epochs", "fit_seconds", "hardware", *ERRORS.values(), "device_test")


def ship(run_dir: Path, name: str, dest: Path = Path("checkpoints")) -> Path:
    """Copy a run's best checkpoint, slimmed, to <dest>/<name>.ckpt beside <name>.metrics.json: the run's
    command and test errors, which `--verify` checks the checkpoint against. Never replaces a file."""
    run = read_run(run_dir)
    if run is None:
        raise SystemExit(f"{run_dir} is not a finished training run (metrics.json and .hydra/ are needed)")
    record_path = dest / f"{name}.metrics.json"
    if record_path.exists():
        raise SystemExit(f"{record_path} exists; move it away first (shipped results are never overwritten)")
    ckpt = slim_checkpoint(best_checkpoint(run), dest / f"{name}.ckpt")
    best = Path(run.metrics["best_ckpt"]).stem  # epoch_012
    record = {
        "experiment": run.experiment,
        "glimpses": run.glimpses,
        "command": run.command,
        "best_epoch": int(best.split("_")[-1]) if best.startswith("epoch_") else None,
        **{k: run.metrics[k] for k in RECORD_KEYS if k in run.metrics},
        "eval_command": f"python -m ram_lightning eval ckpt_path={dest.as_posix()}/{name}.ckpt",
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return ckpt


def verify(dest: Path = Path("checkpoints"), data_dir: str = "data") -> bool:
    """Evaluate every shipped checkpoint on its test set; True when each reproduces its recorded errors."""
    from .train import cpu_model

    # Another CPU family's float kernels round differently, which can flip a borderline image.
    print(f"evaluating on: {cpu_model()}")
    ok = True
    for record_path in sorted(dest.glob("*.metrics.json")):
        record = json.loads(record_path.read_text())
        ckpt = record_path.with_name(record_path.name.replace(".metrics.json", ".ckpt"))
        got = cpu_test(ckpt, data_dir)
        # A record written before the policy-mean figure existed is checked on the other two.
        keys = [k for k in ERRORS.values() if k in record or k != "test/err_deterministic"]
        pairs = [(k, record.get(k), got[k.replace("/", "_")]) for k in keys]
        same = all(None not in (want, have) and abs(want - have) < 1e-6 for _, want, have in pairs)
        ok &= same
        cells = ", ".join(f"{k} {'-' if have is None else f'{have:.2f}'} (recorded {want})" for k, want, have in pairs)
        verdict = "reproduced" if same else f"DIFFERENT (recorded on: {record.get('hardware', 'unknown')})"
        print(f"{ckpt}: {cells}: {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="outputs/results", help="folder holding the training runs")
    parser.add_argument("--quick", action="store_true", help="the results-quick table")
    parser.add_argument("--out", default=None, help="default: docs/results.md or docs/results_quick.md")
    parser.add_argument("--ship", nargs=2, metavar=("RUN_DIR", "NAME"), help="ship a run's best checkpoint")
    parser.add_argument("--verify", action="store_true", help="re-evaluate every checkpoint in checkpoints/")
    parser.add_argument("--retest", nargs="+", metavar="RUN_DIR", help="test runs from a GPU again on the CPU")
    args = parser.parse_args()
    if args.verify:
        raise SystemExit(0 if verify() else 1)
    if args.retest:
        for run_dir in map(Path, args.retest):
            m = retest(run_dir)
            figures = ", ".join(f"{key} {m[key]:.2f}" for key in ERRORS.values() if key in m)
            print(f"{run_dir}: {figures} on the CPU (the run's own test: {m.get('device_test', 'the same')})")
        return
    if args.ship:
        print(f"wrote {ship(Path(args.ship[0]), args.ship[1])}")
        return
    out = Path(args.out or ("docs/results_quick.md" if args.quick else "docs/results.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(Path(args.runs), args.quick))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
