import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from ram_lightning.results import HEADLINE, ROWS, find_runs, report


def fake_run(
    folder: Path, overrides: list[str], glimpses: int, err_mc: float, tags: list[str], start: str = "uniform", **extra
) -> None:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    cfg = {"tags": tags, "model": {"net": {"kind": "ram", "num_glimpses": glimpses, "first_location": start}}}
    OmegaConf.save(OmegaConf.create(cfg), folder / ".hydra" / "config.yaml")
    metrics = {"test/err": err_mc + 0.3, "test/err_mc": err_mc, "epochs": 7, "fit_seconds": 120.0, "hardware": "cpu"}
    metrics |= {f"test/{k}": v for k, v in extra.items()}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_report_fills_rows_from_runs_and_marks_the_rest(tmp_path: Path) -> None:
    fake_run(tmp_path / "a" / "0", ["experiment=mnist", "model.net.num_glimpses=6"], 6, 1.05, [])
    fake_run(tmp_path / "a" / "1", ["experiment=cluttered60"], 8, 5.5, [], start="center")
    fake_run(tmp_path / "b" / "0", ["experiment=mnist", "tags=[quick]"], 6, 3.0, ["quick"])
    short = ["experiment=translated60", "tags=[short]"]
    fake_run(tmp_path / "c" / "0", short, 6, 1.0, ["short"], err_deterministic=1.1)
    runs = find_runs(tmp_path)
    assert (
        len(runs) == 4
        and runs[0].command
        == "python -m ram_lightning train experiment=mnist model.net.num_glimpses=6 model.net.first_location=uniform"
    )
    full = report(tmp_path, quick=False)
    times = "| 7 | 2.0 min | cpu |"
    assert (
        f"| **mnist, 6 glimpses** | 1.35 | 1.05 | - {times} 1.12 | 0.78 (seed) | beats the paper with M=10 only |"
        in full
    )
    row = f"| translated60, 6 glimpses | 1.30 | 1.00 | 1.10 {times} 1.22 | 1.19 (seed) | short schedule; "
    assert (
        row + "beats the paper with M=10 and policy mean only; beats the best public with M=10 and policy mean only |"
        in full
    )
    assert "| **cluttered60, 8 glimpses, centred first glimpse** | 5.80 | 5.50 |" in full
    assert "does not beat the paper yet" in full
    table_rows = [line for line in full.splitlines() if line.startswith("| ")]
    assert sum("not run yet" in line for line in table_rows) == len(ROWS) - 3
    quick = report(tmp_path, quick=True)
    assert "SHORT schedule" in quick and "| 3.30 | 3.00 | - |" in quick and "| short schedule" not in quick
    assert sum(line.startswith("| **") for line in quick.splitlines()) == 4


def test_the_latest_run_of_a_row_fills_it_wherever_it_lies(tmp_path: Path) -> None:
    fake_run(tmp_path / "runs" / "late", ["experiment=mnist"], 6, 0.9, [])
    fake_run(tmp_path / "multiruns" / "early" / "0", ["experiment=mnist"], 6, 2.0, [])
    os.utime(tmp_path / "multiruns" / "early" / "0" / "metrics.json", (1, 1))  # finished long before
    assert "| **mnist, 6 glimpses** | 1.20 | 0.90 |" in report(tmp_path, quick=False)


def test_a_fine_tuned_run_says_so(tmp_path: Path) -> None:
    overrides = ["experiment=cluttered60", "init_from=checkpoints/resume/base.ckpt", "model.net.std=0.05"]
    fake_run(tmp_path / "tuned", overrides, 8, 2.5, [], err_deterministic=4.0)
    full = report(tmp_path, quick=False)
    row = "| 7 | 2.0 min | cpu | 4.04 | 2.63 (tfRAM) | fine-tuned from an earlier run's weights (see its command); "
    assert row + "beats the paper; beats the best public with M=10 only |" in full
    assert "python -m ram_lightning train experiment=cluttered60 init_from=checkpoints/resume/base.ckpt" in full


def test_a_resumed_run_says_so_and_shows_no_wall_time(tmp_path: Path) -> None:
    overrides = ["experiment=cluttered60", "ckpt_path=checkpoints/resume/stopped.ckpt"]
    fake_run(tmp_path / "resumed", overrides, 8, 2.5, [], err_deterministic=4.0)
    full = report(tmp_path, quick=False)
    row = "| 7 | resumed run | cpu | 4.04 | 2.63 (tfRAM) | resumed from a stopped run's checkpoint (see its command); "
    assert row + "beats the paper; beats the best public with M=10 only |" in full


def test_a_centred_first_glimpse_fills_its_own_row(tmp_path: Path) -> None:
    fake_run(tmp_path / "uniform", ["experiment=cluttered60"], 8, 2.7, [], err_deterministic=5.0)
    centred = ["experiment=cluttered60", "model.net.first_location=center"]
    fake_run(tmp_path / "centred", centred, 8, 3.0, [], start="center", err_deterministic=3.9)
    full = report(tmp_path, quick=False)
    assert "| cluttered60, 8 glimpses | 3.00 | 2.70 | 5.00 |" in full
    assert "| **cluttered60, 8 glimpses, centred first glimpse** | 3.30 | 3.00 | 3.90 |" in full
    assert "train experiment=cluttered60 model.net.first_location=center" in full
    # the uniform run's command names its start too: the experiment's default is the centre now
    assert "train experiment=cluttered60 model.net.first_location=uniform\n" in full


@pytest.mark.parametrize("experiment, glimpses, start", sorted(HEADLINE))
def test_a_headline_row_is_its_experiments_own_config(experiment: str, glimpses: int, start: str) -> None:
    net = compose_cfg("train", [f"experiment={experiment}", f"model.net.num_glimpses={glimpses}"]).model.net
    assert net.first_location == start
