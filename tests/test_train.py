import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, open_dict

from conftest import compose_cfg, run_cli
from ram_lightning import RecurrentAttention
from ram_lightning.checkpoint import read_checkpoint
from ram_lightning.config import CONF_DIR
from ram_lightning.errors import RAMError
from ram_lightning.evaluate import AimedLocator, _where_it_looked, evaluate, glimpses_on_digit
from ram_lightning.results import retest, ship, verify
from ram_lightning.train import checkpoint_to_test, train

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_one_batch(train_cfg, experiment: str) -> None:
    cfg = train_cfg(f"experiment={experiment}", "debug=fast_dev_run", tiny_model=False)
    metrics = train(cfg)
    assert 0 <= metrics["test/err"] <= 100 and "val/err_mc" in metrics
    learns_where_to_look = not (experiment.startswith(("fc_", "conv_")) or experiment.endswith("_random"))
    assert ("test/err_deterministic" in metrics) == learns_where_to_look  # the policy-mean path needs a policy


@pytest.mark.parametrize("debug", ["limit", "overfit"])
def test_debug_configs_run_on_any_data_size(train_cfg, debug: str) -> None:
    metrics = train(train_cfg(f"debug={debug}", "trainer.max_epochs=2"))  # tiny data: two validation batches
    assert 0 <= metrics["test/err"] <= 100


def test_train_writes_checkpoints_and_metrics_and_eval_reproduces_the_test_error(train_cfg, tmp_path) -> None:
    cfg = train_cfg()
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "metrics.json").read_text())["test/err"] == metrics["test/err"]
    assert (run / "csv" / "metrics.csv").is_file() and list((run / "tensorboard").glob("events.*"))
    eval_cfg = compose_cfg("eval", [f"ckpt_path={metrics['best_ckpt']}", f"paths.data_dir={cfg.paths.data_dir}"])
    report = evaluate(eval_cfg)
    assert report["test_err"] == pytest.approx(metrics["test/err"], abs=1e-6)
    assert report["test_err_mc"] == pytest.approx(metrics["test/err_mc"], abs=1e-6)
    assert report["test_err_deterministic"] == pytest.approx(metrics["test/err_deterministic"], abs=1e-6)
    assert report["test_err_per_path"] == pytest.approx(metrics["test/err_per_path"], abs=1e-6)
    assert sum(map(sum, report["confusion_matrix"])) == 60
    assert report["policy_mean_on_digit"] is None  # plain 28x28: the digit is the whole image
    again = evaluate(eval_cfg)  # a second report never overwrites the first
    assert len(list(run.glob("eval_*.json"))) == 2 and again["test_err"] == report["test_err"]


def test_the_prob_reward_and_a_per_path_ranking_come_from_the_config(train_cfg) -> None:
    cfg = train_cfg("model.reward=prob", "callbacks.model_checkpoint.monitor=val/err_per_path", "trainer.max_epochs=2")
    train(cfg)
    last = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert last["hyper_parameters"]["reward"] == "prob"
    (ranking,) = [v for k, v in last["callbacks"].items() if k.startswith("RunCheckpoint")]
    assert ranking["monitor"] == "val/err_per_path"
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv") as f:
        scores = [float(r["val/err_per_path"]) for r in csv.DictReader(f) if r["val/err_per_path"]]
    assert len(scores) == 2 and float(ranking["best_model_score"]) == pytest.approx(min(scores))


# Averaged weights: a decay whose float32 average of a constant is not that constant (0.5 would be exact).
@pytest.mark.parametrize("weights", [(), ("callbacks=ema", "callbacks.ema.decay=0.9995")], ids=["raw", "ema"])
def test_eval_on_the_validation_set_measures_what_training_logged_there(train_cfg, tmp_path, weights) -> None:
    cfg = train_cfg("trainer.max_epochs=2", "callbacks.model_checkpoint.monitor=val/err_per_path", *weights)
    best = train(cfg)["best_ckpt"]
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r["val/err_per_path"]]
    epoch = int(read_checkpoint(best)["epoch"])
    (at_best,) = [r for r in logged if int(r["epoch"]) == epoch]
    args = [f"ckpt_path={best}", f"paths.data_dir={cfg.paths.data_dir}", f"out={tmp_path / 'val.json'}"]
    report = evaluate(compose_cfg("eval", [*args, "split=val"]))
    assert report["split"] == "val" and "test_err" not in report
    for key in ("err", "err_mc", "err_per_path"):
        assert report[f"val_{key}"] == pytest.approx(float(at_best[f"val/{key}"]), abs=1e-4), key
    assert report["metrics"]["val/loss_ce"] == pytest.approx(float(at_best["val/loss_ce"]), rel=1e-4)
    assert report["val_err_deterministic"] is None and report["confusion_matrix"] is None
    with pytest.raises(RAMError, match="split=train is not allowed: choose one of test, val"):
        evaluate(compose_cfg("eval", [*args, "split=train"]))


def test_eval_samples_paths_at_another_std_or_start_when_asked(train_cfg, tmp_path) -> None:
    cfg = train_cfg()
    ckpt = train(cfg)["best_ckpt"]
    data = f"paths.data_dir={cfg.paths.data_dir}"

    def run(*extra: str) -> dict:
        out = f"out={tmp_path / 'report.json'}"  # each report gets a free name beside the last
        return evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", data, out, *extra]))

    own = run()
    assert own["std"] == cfg.model.net.std and own["first_location"] == cfg.model.net.first_location == "uniform"
    tiny, tinier = run("std=1e-6"), run("std=2e-6")
    assert tiny["std"] == 1e-6 and tinier["std"] == 2e-6
    assert tiny["test_err"] == tinier["test_err"]  # the same first glimpses, then noise too small to matter
    centred = run("std=1e-6", "first_location=center")
    assert centred["first_location"] == "center"
    assert centred["test_err"] == centred["test_err_deterministic"]  # paths start alike, noise too small to matter
    for bad in ("0", "wide"):
        with pytest.raises(RAMError, match=re.escape(f"std={bad} is not allowed: must be a number > 0")):
            run(f"std={bad}")
    with pytest.raises(RAMError, match="first_location=corner is not allowed: choose one of center, uniform"):
        run("first_location=corner")


def test_ema_weights_are_validated_saved_and_tested_and_a_resume_trains_the_raw_ones(train_cfg, tmp_path) -> None:
    ema = ("callbacks=ema", "callbacks.ema.decay=0.5", "trainer.max_epochs=2")
    cfg = train_cfg(*ema)
    metrics = train(cfg)
    best = read_checkpoint(metrics["best_ckpt"])
    raw, averaged = best["current_model_state"], best["state_dict"]
    assert raw.keys() == averaged.keys() and any(not torch.equal(raw[k], averaged[k]) for k in raw)
    eval_cfg = compose_cfg("eval", [f"ckpt_path={metrics['best_ckpt']}", f"paths.data_dir={cfg.paths.data_dir}"])
    report = evaluate(eval_cfg)  # eval reads state_dict: the test after training must have measured the same
    assert report["test_err"] == pytest.approx(metrics["test/err"], abs=1e-6)
    assert report["test_err_mc"] == pytest.approx(metrics["test/err_mc"], abs=1e-6)

    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = train_cfg(*ema[:2], "trainer.max_epochs=3", f"ckpt_path={last}",
                        f"paths.output_dir={tmp_path / 'resumed'}", "test=false")  # fmt: skip
    with open_dict(resumed):
        resumed.callbacks.probe = {"_target_": f"{__name__}.WeightsAtTrainStart"}
    train(resumed)
    before, seen = read_checkpoint(last), WeightsAtTrainStart.seen
    raw, averaged = before["current_model_state"], before["state_dict"]
    assert all(torch.equal(seen[k], raw[k]) for k in raw)  # training goes on from the raw weights
    assert not all(torch.equal(seen[k], averaged[k]) for k in averaged)


class WeightsAtTrainStart(pl.Callback):
    seen: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        WeightsAtTrainStart.seen = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_resume_continues_the_step_counter(train_cfg, tmp_path) -> None:
    first = train_cfg()
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    steps = read_checkpoint(last)["global_step"]
    assert steps > 0
    second = train_cfg("trainer.max_epochs=2", f"ckpt_path={last}", f"paths.output_dir={tmp_path / 'resumed'}")
    train(second)
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 2 * steps


def test_init_from_starts_from_the_weights_with_a_fresh_schedule(train_cfg, tmp_path) -> None:
    first = train_cfg()
    train(first)
    ckpt = read_checkpoint(Path(first.paths.output_dir) / "checkpoints" / "last.ckpt")
    ckpt["state_dict"] = {k: v + 0.5 for k, v in ckpt["state_dict"].items()}  # far from any fresh start
    torch.save(ckpt, tmp_path / "shifted.ckpt")
    assert first.model.net.num_glimpses != 4  # the weights fit any number of glimpses
    tuned = train_cfg(f"init_from={tmp_path / 'shifted.ckpt'}", "model.net.std=0.05", "model.net.num_glimpses=4",
                      "test=false", "+trainer.max_steps=1", f"paths.output_dir={tmp_path / 'tuned'}")  # fmt: skip
    train(tuned)
    after = read_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.ckpt")
    assert after["global_step"] == 1 and after["epoch"] == 0  # a new run, not a resumed one
    for k, v in ckpt["state_dict"].items():  # one Adam step (lr 3e-4) from the given weights
        assert torch.allclose(after["state_dict"][k], v, atol=1e-2), k


def test_init_from_refuses_another_network_and_resuming_at_once(train_cfg, tmp_path) -> None:
    first = train_cfg()
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(RAMError, match=r"does not fit the configured network.*set the same model\.net"):
        train(train_cfg(f"init_from={last}", "model.net.hidden=24", f"paths.output_dir={tmp_path / 'a'}"))
    with pytest.raises(RAMError, match="not both"):
        train(train_cfg(f"init_from={last}", f"ckpt_path={last}", f"paths.output_dir={tmp_path / 'b'}"))


def test_init_strict_false_starts_only_the_missing_weights_afresh(train_cfg, tmp_path) -> None:
    first = train_cfg()
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    grown = [f"init_from={last}", "model.net.locator_hidden=8", "model.net.classifier_hidden=8"]
    grown += ["test=false", "+trainer.max_steps=1"]
    with pytest.raises(RAMError, match=r"missing: net\.classifier_mlp.*or init_strict=false"):
        train(train_cfg(*grown, f"paths.output_dir={tmp_path / 'a'}"))
    train(train_cfg(*grown, "init_strict=false", f"paths.output_dir={tmp_path / 'b'}"))
    theirs = read_checkpoint(last)["state_dict"]
    after = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")["state_dict"]
    assert {k for k in after if k not in theirs} == {
        f"net.{part}.{i}.{w}" for part in ("locator.mlp", "classifier_mlp") for i in (0, 2) for w in ("weight", "bias")
    }
    for k, v in theirs.items():  # one Adam step from the given weights
        assert torch.allclose(after[k], v, atol=1e-2), k
    with pytest.raises(RAMError, match="init_strict='maybe' is not allowed: choose true or false"):
        train(train_cfg(*grown, "init_strict=maybe", f"paths.output_dir={tmp_path / 'd'}"))
    with pytest.raises(RAMError, match="other shapes"):  # init_strict=false never hides a different network
        train(
            train_cfg(
                f"init_from={last}", "model.net.hidden=24", "init_strict=false", f"paths.output_dir={tmp_path / 'c'}"
            )
        )
    # but it grows a wider core (32 -> 40 units of h_t) from the checkpoint's, which strict loading refuses
    with pytest.raises(RAMError, match=r"net\.core\.fc_g\.weight \(32, 32\) vs \(40, 32\).*or init_strict=false"):
        train(train_cfg(f"init_from={last}", "model.net.hidden=40", f"paths.output_dir={tmp_path / 'f'}"))
    train(
        train_cfg(
            *grown[:1], *grown[3:], "model.net.hidden=40", "init_strict=false", f"paths.output_dir={tmp_path / 'e'}"
        )
    )
    wide = read_checkpoint(tmp_path / "e" / "checkpoints" / "last.ckpt")["state_dict"]
    assert wide["net.classifier.weight"].shape == (10, 40)
    assert torch.allclose(wide["net.classifier.weight"][:, :32], theirs["net.classifier.weight"], atol=1e-2)


def test_a_finished_run_folder_is_not_overwritten(train_cfg) -> None:
    cfg = train_cfg("test=false", "logger=none")  # no loggers: the learning-rate monitor is left out
    train(cfg)
    with pytest.raises(Exception, match="already holds a finished run"):
        train(cfg)


def test_glimpses_on_digit_maps_glimpse_centres_as_the_retina_does() -> None:
    boxes = torch.tensor([[10, 20, 38, 48]] * 3)  # top, left, bottom, right on a 60x60 canvas
    paths = torch.tensor(
        [
            [[-1.0, -1.0], [-1 + 2 * 20.5 / 60, -1 + 2 * 10.5 / 60]],  # second glimpse at (x 20.5, y 10.5): inside
            [[0.0, 0.0], [1.0, 1.0]],  # x 30, y 30, then the far corner: the first is inside
            [[-1 + 2 * 48 / 60, 0.0], [0.0, -1 + 2 * 38 / 60]],  # on the exclusive right and bottom edges
        ]
    )
    on = glimpses_on_digit(paths, boxes, (60, 60))  # (3, 2)
    assert on.tolist() == [[False, True], [True, False], [False, False]]


def test_where_it_looked_counts_glimpses_on_the_digit_for_right_and_wrong_paths() -> None:
    on, off = [0.0, 0.0], [0.9, 0.9]  # the centre of a 60x60 canvas lies in the box below; (0.9, 0.9) does not
    locations = torch.tensor([[on, on, off], [off, off, off], [off, on, off]])  # (3 paths, T=3, 2)
    wrong = torch.tensor([False, True, True])
    module = SimpleNamespace(policy_mean_paths=[(locations[:2], wrong[:2]), (locations[2:], wrong[2:])])
    dm = SimpleNamespace(digit_boxes=lambda split: torch.tensor([[16, 16, 44, 44]] * 3), image_shape=(1, 60, 60))
    looked = _where_it_looked(module, dm)
    assert looked["policy_mean_on_digit"] == pytest.approx(200 / 3)
    assert looked["policy_mean_errors_off_digit"] == 50  # one of the two wrong paths never looked at it
    assert looked["policy_mean_glimpses_on_digit"] == {"right": 2.0, "wrong": 0.5}
    assert looked["policy_mean_first_step_on_digit"] == 1.5  # steps 1 and 2
    assert looked["policy_mean_on_digit_by_step"] == pytest.approx([100 / 3, 200 / 3, 0])


def test_eval_says_whether_the_policy_mean_paths_looked_at_the_digit(train_cfg, tmp_path) -> None:
    cfg = train_cfg("experiment=translated60", "data.canvas=40", "model.net.num_glimpses=2")
    metrics = train(cfg)
    out = f"out={tmp_path / 'report.json'}"
    args = [f"ckpt_path={metrics['best_ckpt']}", f"paths.data_dir={cfg.paths.data_dir}", out]
    report = evaluate(compose_cfg("eval", [*args, "aim_at_digit=0"]))
    # aimed 0 of the way to the digit is the model's own policy-mean path, outside Lightning's test loop
    assert report["aim_at_digit"] == 0 and report["aimed_err_policy_mean"] == report["test_err_deterministic"]
    assert 0 <= report["aimed_err_sampled"] <= 100
    with pytest.raises(RAMError, match=re.escape("aim_at_digit=2 is not allowed: must be a number in [0, 1]")):
        evaluate(compose_cfg("eval", [*args, "aim_at_digit=2"]))
    hit, off = report["policy_mean_on_digit"], report["policy_mean_errors_off_digit"]
    assert 0 <= hit <= 100 and 0 <= off <= 100
    # a 28x28 digit on a 40x40 canvas always covers the centre, where this model's first glimpse goes
    assert report["first_location"] == "center" and hit == 100 and off == 0
    assert report["policy_mean_first_step_on_digit"] == 1
    counts = [c for c in report["policy_mean_glimpses_on_digit"].values() if c is not None]
    assert counts and all(1 <= c <= 2 for c in counts)  # the centred first glimpse, and perhaps the second


def test_an_aimed_locator_moves_the_policy_mean_toward_the_target() -> None:
    torch.manual_seed(0)
    net = RecurrentAttention(
        (1, 24, 24), patch_size=4, num_glimpses=3, hidden_g=8, hidden_l=8, glimpse_dim=16, hidden=16
    )
    x, target = torch.rand(5, 1, 24, 24), torch.rand(5, 2) - 0.5
    own = net(x, deterministic=True).locations  # (B, T, 2)
    for weight in (0.0, 0.5, 1.0):
        net.locator = AimedLocator(locator := net.locator, weight)
        net.locator.target = target
        aimed = net(x, deterministic=True).locations
        net.locator = locator
        torch.testing.assert_close(aimed[:, 0], own[:, 0])  # the first glimpse is not the policy's to choose
        if weight == 1.0:
            torch.testing.assert_close(aimed[:, 1:], target[:, None].expand(5, 2, 2))
        elif weight == 0.0:
            torch.testing.assert_close(aimed, own)


def test_loggers_get_plain_hparams_and_the_checkpoint_records_the_recipe(train_cfg) -> None:
    cfg = train_cfg("experiment=translated60", "data.canvas=40", "model.net.num_glimpses=2")
    with open_dict(cfg):
        cfg.test = False
    train(cfg)
    ckpt = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    hp = ckpt["hyper_parameters"]
    assert hp["recipe"]["variant"] == "translated" and hp["recipe"]["canvas"] == 40
    assert hp["in_shape"] == (1, 40, 40) and hp["net"]["num_glimpses"] == 2
    assert isinstance(hp["net"], dict) and torch.is_tensor(next(iter(ckpt["state_dict"].values())))


# ---- the command line, in fresh processes (image-folder data: no digests to replace) ----

FOLDER_RUN = [
    "data=image_folder", "data.image_size=24", "data.batch_size=8", "data.eval_batch_size=8",
    "model.net.patch_size=6", "model.net.num_glimpses=2", "model.mc_eval=2", "trainer.max_epochs=1",
    "logger=csv", "callbacks=none", "test=false", "+trainer.enable_model_summary=false",
]  # fmt: skip


def test_multirun_makes_one_folder_per_job(shapes_folder, tmp_path) -> None:
    res = run_cli("train", "-m", "model.net.num_glimpses=1,2", f"data.root={shapes_folder}", *FOLDER_RUN[:5],
                  *FOLDER_RUN[6:], f"paths.log_dir={tmp_path / 'logs'}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list((tmp_path / "logs" / "train" / "multiruns").glob("*/*/metrics.json"))
    assert len(runs) == 2


def test_ddp_cpu_trains_with_two_processes(shapes_folder, tmp_path) -> None:
    res = run_cli("train", "trainer=ddp_cpu", f"data.root={shapes_folder}", *FOLDER_RUN,
                  f"paths.log_dir={tmp_path / 'logs'}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world_size: 2" in res.stderr + res.stdout or "Initializing distributed: GLOBAL_RANK: 1" in res.stderr
    assert len(list((tmp_path / "logs" / "train" / "runs").glob("*/metrics.json"))) == 1


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.net.core=gru", "model.net.core='gru'"),
        ("model.net.num_glimpses=0", "model.net.num_glimpses=0"),
        ("model.net.std=0", "model.net.std=0"),
        ("model.net.num_scales=0", "model.net.num_scales=0"),
        ("model.net.patch_size=60", "largest patch is 60 px"),
        ("model.net.first_location=corner", "model.net.first_location='corner'"),
        ("model.policy_lr_scale=0", "model.policy_lr_scale=0"),
        ("model.label_smoothing=1", "model.label_smoothing=1 is not allowed: must be in [0, 1)"),
        (
            "model.distill_weight=1",
            "model.distill_weight=1 is not allowed: must be >= 0, and > 0 only with model.mc_train >= 2",
        ),
        ("model.baseline=mean", "model.baseline='mean' is not allowed: choose one of learned, copies"),
        ("model.baseline=copies", "model.baseline='copies' is not allowed: choose one of learned, copies; copies only"),
        ("model.reward=accuracy", "model.reward='accuracy' is not allowed: choose one of correct, prob"),
        ("model.net.dropout=-0.1", "model.net.dropout=-0.1 is not allowed: must be in [0, 1)"),
        ("model.net.locator_hidden=-4", "model.net.locator_hidden=-4 is not allowed: must be an integer >= 0"),
        ("model.net.locator_hidden=true", "model.net.locator_hidden=True is not allowed: must be an integer >= 0"),
        ("model.net.glimpse_hidden=-1", "model.net.glimpse_hidden=-1 is not allowed: must be an integer >= 0"),
        ("model.net.classifier_hidden=0.5", "model.net.classifier_hidden=0.5 is not allowed: must be an integer >= 0"),
        ("model.net.locator_reads_location=2", "locator_reads_location=2 is not allowed: must be true or false"),
        ("model.net.locator_reads_glimpse=3", "locator_reads_glimpse=3 is not allowed: must be true or false"),
        ("+model.lr_scale.core=-1", "model.lr_scale.core=-1 is not allowed: must be a number > 0"),
        ("+model.lr_scale.locator.fc_rho=2", "model.lr_scale.locator.fc_rho is not allowed: no part of this model"),
        ("ckpt_path=/nonexistent/x.ckpt", "checkpoint not found"),
        ("init_from=/nonexistent/x.ckpt", "(pass init_from="),
        ("data.batch_size=0", "data.batch_size=0"),
    ],
)
def test_bad_config_values_name_the_key(train_cfg, override: str, expected: str) -> None:
    with pytest.raises(RAMError, match=re.escape(expected)):
        train(train_cfg(override))


def test_baseline_dropout_must_be_a_probability(train_cfg) -> None:
    with pytest.raises(RAMError, match=re.escape("model.net.dropout=1.0 is not allowed: must be in [0, 1)")):
        train(train_cfg("model=conv", "model.net.dropout=1.0", tiny_model=False))


@pytest.mark.parametrize("group", ["experiment", "model", "data", "trainer"])
def test_unknown_group_option_lists_the_choices(group: str) -> None:
    with pytest.raises(MissingConfigException, match=f"Available options in '{group}'"):
        compose_cfg("train", [f"{group}=nope"])


@pytest.mark.parametrize(
    "override, expected",
    [("experiment=nope", "Could not find 'experiment/nope'"), ("model.net.core=gru", "model.net.core='gru'")],
)
def test_bad_input_on_the_command_line_exits_without_a_traceback(tmp_path, override: str, expected: str) -> None:
    res = run_cli("train", override, f"paths.root_dir={tmp_path}", cwd=tmp_path, timeout=120)
    assert res.returncode != 0
    assert expected in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_eval_refuses_missing_and_foreign_checkpoints(tmp_path) -> None:
    res = run_cli("eval", "ckpt_path=/nonexistent/x.ckpt", cwd=tmp_path)
    assert res.returncode == 2 and "checkpoint not found" in res.stderr and "Traceback" not in res.stderr
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"lr": 1.0}}, foreign)
    res = run_cli("eval", f"ckpt_path={foreign}", cwd=tmp_path)
    assert res.returncode == 2 and "not written by ram-lightning" in res.stderr


def test_help(tmp_path) -> None:
    res = run_cli("--help", cwd=tmp_path)
    assert res.returncode == 0 and all(c in res.stdout for c in ("train", "eval", "data", "render"))
    res = run_cli("train", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "experiment: " in res.stdout and "cluttered60" in res.stdout
    res = run_cli("fly", cwd=tmp_path)
    assert res.returncode == 2 and "unknown command 'fly'" in res.stderr


def test_optuna_sweep_returns_the_optimised_metric(shapes_folder, tmp_path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the sweep extra: pip install -e '.[sweep]'")
    sweep = ["hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"]
    logs = f"paths.log_dir={tmp_path / 'logs'}"
    res = run_cli("train", *sweep, f"data.root={shapes_folder}", *FOLDER_RUN, logs, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Best value:" in res.stdout + res.stderr
    assert len(list((tmp_path / "logs" / "train" / "multiruns").glob("*/*/metrics.json"))) == 2


def test_a_shipped_checkpoint_is_verified_against_its_record(train_cfg, tmp_path, capsys) -> None:
    cfg = train_cfg()
    train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / ".hydra").mkdir()  # what `python -m ram_lightning train` leaves beside the run
    OmegaConf.save(OmegaConf.create(["experiment=mnist"]), run / ".hydra" / "overrides.yaml")
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    ship(run, "tiny", shipped)
    record = json.loads((shipped / "tiny.metrics.json").read_text())
    assert record["command"] == "python -m ram_lightning train experiment=mnist model.net.first_location=uniform"
    assert "/" not in record["command"]
    assert verify(shipped, str(cfg.paths.data_dir))
    with pytest.raises(SystemExit, match="never overwritten"):
        ship(run, "tiny", shipped)
    assert "test/err_deterministic" in record
    record.pop("test/err_deterministic")  # a record from before that figure existed is checked on the other two
    (shipped / "tiny.metrics.json").write_text(json.dumps(record))
    assert verify(shipped, str(cfg.paths.data_dir))
    for key in ("test/err_mc", "test/err_deterministic"):
        (shipped / "tiny.metrics.json").write_text(json.dumps({**record, key: 42.0}))
        assert not verify(shipped, str(cfg.paths.data_dir))
    assert f"DIFFERENT (recorded on: {record['hardware']})" in capsys.readouterr().out


def test_a_run_copied_from_another_machine_is_retested_on_the_cpu_and_shipped(train_cfg, tmp_path) -> None:
    cfg = train_cfg()
    train(cfg)
    trained = Path(cfg.paths.output_dir)
    (trained / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(["experiment=mnist"]), trained / ".hydra" / "overrides.yaml")
    OmegaConf.save(cfg, trained / ".hydra" / "config.yaml")
    metrics = json.loads((trained / "metrics.json").read_text())
    device = {"test/err": 99.0, "test/err_mc": 98.0, "hardware": "1 x GPU"}  # what a GPU's test would have said
    (trained / "metrics.json").write_text(json.dumps(metrics | device))
    run = trained.rename(tmp_path / "copied")  # the recorded best_ckpt path no longer exists
    assert not Path(metrics["best_ckpt"]).exists()
    retested = retest(run, str(cfg.paths.data_dir))
    assert retested["device_test"] == device and retested["test_device"] == "cpu"
    assert (retested["test/err"], retested["test/err_mc"]) == (metrics["test/err"], metrics["test/err_mc"])
    assert json.loads((run / "metrics.json").read_text()) == retested
    assert retest(run, str(cfg.paths.data_dir))["device_test"] == device  # again: the device's figures stay
    assert retested["test/err_deterministic"] == pytest.approx(metrics["test/err_deterministic"], abs=1e-6)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    ship(run, "copied", shipped)
    assert json.loads((shipped / "copied.metrics.json").read_text())["device_test"] == device
    assert verify(shipped, str(cfg.paths.data_dir))


def test_a_best_checkpoint_that_is_gone_is_not_tested(tmp_path, caplog) -> None:
    def trainer(best: str):
        return SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path=best))

    (tmp_path / "epoch_001.ckpt").touch()
    assert checkpoint_to_test(trainer(str(tmp_path / "epoch_001.ckpt"))) == str(tmp_path / "epoch_001.ckpt")
    assert checkpoint_to_test(trainer(str(tmp_path / "moved" / "epoch_000.ckpt"))) == ""
    assert "is gone; testing the final weights" in caplog.text


def test_last_ckpt_follows_every_epoch_even_without_a_new_best(train_cfg) -> None:
    cfg = train_cfg("trainer.max_epochs=3", "model.lr=1e-12")  # nothing learns: only epoch 0 is a best
    metrics = train(cfg)
    last = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert Path(metrics["best_ckpt"]).name == "epoch_000.ckpt"
    assert last["epoch"] == 2 and last["global_step"] == 3 * 9
