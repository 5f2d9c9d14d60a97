from types import SimpleNamespace

import pytest
import torch

from conftest import quiet_trainer
from ram_lightning import RAMLitModule, RecurrentAttention, hybrid_loss
from ram_lightning.checkpoint import grow_hidden
from ram_lightning.errors import ConfigError
from ram_lightning.lit_module import build_net
from ram_lightning.losses import BASELINES, REWARDS, advantage_of, distillation, reward_of

PARTS = ("glimpse", "core", "locator", "baseline", "classifier")
TINY = dict(patch_size=4, num_scales=2, num_glimpses=3, hidden_g=16, hidden_l=8, glimpse_dim=32, hidden=32)
BRANCHES = dict(locator_hidden=8, glimpse_hidden=8, classifier_hidden=8)  # every zero-started side branch


def grads_by_part(model: RecurrentAttention) -> dict[str, bool]:
    """Which parts received a gradient that is not exactly zero; classifier_mlp counts as the classifier."""
    got = dict.fromkeys(PARTS, False)
    for name, p in model.named_parameters():
        part = name.split(".")[0].removesuffix("_mlp")
        got[part] |= p.grad is not None and bool(p.grad.abs().sum() > 0)
    return got


@pytest.mark.parametrize("core", ["lstm", "rnn"])
def test_shapes_and_dtypes(core: str) -> None:
    model = RecurrentAttention((3, 20, 24), num_classes=7, core=core, **TINY)
    out = model(torch.rand(5, 3, 20, 24), return_patches=True)
    assert out.logits.shape == (5, 7) and out.logits.dtype == torch.float32
    assert out.log_prob.shape == out.baseline.shape == (5, 3)
    assert out.locations.shape == (5, 3, 2) and out.locations.abs().max() <= 1
    assert out.patches.shape == (5, 3, 2, 3, 4, 4)
    assert (out.log_prob[:, -1] == 0).all()  # the last state chooses no location
    assert model(torch.rand(5, 3, 20, 24)).patches is None


def test_patches_are_what_the_retina_sees_at_the_locations() -> None:
    model = RecurrentAttention((1, 16, 16), **TINY)
    x = torch.rand(2, 1, 16, 16)
    out = model(x, return_patches=True)
    for t in range(3):
        torch.testing.assert_close(out.patches[:, t], model.retina(x, out.locations[:, t]))


def test_deterministic_mode_is_repeatable_and_sampling_is_not() -> None:
    model = RecurrentAttention((1, 16, 16), std=0.3, **TINY)
    x = torch.rand(4, 1, 16, 16)
    a, b = model(x, deterministic=True), model(x, deterministic=True)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.locations, b.locations)
    assert not torch.equal(model(x).locations, model(x).locations)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(model(x, generator=gen()).locations, model(x, generator=gen()).locations)


def test_first_location_and_random_glimpses() -> None:
    x = torch.rand(6, 1, 16, 16)
    centre = RecurrentAttention((1, 16, 16), first_location="center", **TINY)(x)
    assert (centre.locations[:, 0] == 0).all()
    uniform = RecurrentAttention((1, 16, 16), first_location="uniform", **TINY)(x)
    assert uniform.locations[:, 0].abs().sum() > 0
    rand = RecurrentAttention((1, 16, 16), random_glimpses=True, **TINY)
    out = rand(x, deterministic=True)
    assert (out.log_prob == 0).all() and out.locations.std() > 0.1


@pytest.mark.parametrize(
    "term, expected",
    [
        ("loss_ce", {"glimpse", "core", "classifier"}),
        ("loss_reinforce", {"locator"}),
        ("loss_baseline", {"baseline"}),
    ],
)
@pytest.mark.parametrize("core, branches", [("lstm", {}), ("rnn", {}), ("lstm", BRANCHES)])
@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("baseline", BASELINES)
def test_gradient_routing(term: str, expected: set[str], core: str, branches: dict, reward: str, baseline: str) -> None:
    torch.manual_seed(0)
    model = RecurrentAttention((1, 16, 16), core=core, std=0.2, **branches, **TINY)
    # rows in groups of four as copies; independent labels, so that a group's returns differ even untrained
    x, y = torch.rand(128, 1, 16, 16), torch.randint(0, 10, (128,))
    getattr(hybrid_loss(model(x), y, reward=reward, copies=4, baseline=baseline), term).backward()
    got = grads_by_part(model)
    assert {p for p, nonzero in got.items() if nonzero} == expected


@pytest.mark.parametrize(
    "locator_hidden, reads_location, reads_glimpse", [(0, False, False), (8, False, False), (0, True, True)]
)
def test_one_reinforce_step_changes_only_the_locator(
    locator_hidden: int, reads_location: bool, reads_glimpse: bool
) -> None:
    torch.manual_seed(0)
    net = {
        "kind": "ram",
        "locator_hidden": locator_hidden,
        "locator_reads_location": reads_location,
        "locator_reads_glimpse": reads_glimpse,
        **TINY,
    }
    lit = RAMLitModule(net, (1, 16, 16), policy_lr_scale=3.0)
    before = {k: v.clone() for k, v in lit.net.state_dict().items()}
    opt = lit.configure_optimizers()["optimizer"]
    x, y = torch.rand(32, 1, 16, 16), torch.randint(0, 10, (32,))
    hybrid_loss(lit.net(x), y).loss_reinforce.backward()
    opt.step()
    changed = {k for k, v in lit.net.state_dict().items() if not torch.equal(v, before[k])}
    assert {k.split(".")[0] for k in changed} == {"locator"}
    # the hidden layer's output starts at zero, so its first step moves that layer alone
    assert {k for k in changed if ".mlp." in k} == (
        {"locator.mlp.2.weight", "locator.mlp.2.bias"} if locator_hidden else set()
    )
    assert ("locator.fc_where.weight" in changed) == reads_location  # it reads l_t, which is not zero after t=1
    assert ("locator.fc_rho.weight" in changed) == reads_glimpse


def test_side_branches_start_as_the_model_they_grow_from() -> None:
    torch.manual_seed(0)
    linear = RecurrentAttention((1, 16, 16), **TINY)
    grown = RecurrentAttention((1, 16, 16), **BRANCHES, locator_reads_location=True, locator_reads_glimpse=True, **TINY)
    missing = grown.load_state_dict(linear.state_dict(), strict=False).missing_keys
    branches = [
        f"{part}.mlp.{i}.{w}" if part != "classifier" else f"classifier_mlp.{i}.{w}"
        for part in ("classifier", "glimpse", "locator")
        for i in (0, 2)
        for w in ("bias", "weight")
    ]
    assert sorted(missing) == sorted([*branches, "locator.fc_where.weight", "locator.fc_rho.weight"])
    x = torch.rand(4, 1, 16, 16)
    a, b = linear(x, generator=torch.Generator().manual_seed(2)), grown(x, generator=torch.Generator().manual_seed(2))
    for field in ("logits", "locations", "log_prob", "baseline"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field))
    # one step on the classification loss reaches the new glimpse and classifier layers, not the locator's
    grown.zero_grad()
    hybrid_loss(grown(x), torch.arange(4)).loss_ce.backward()
    moved = {n for n, p in grown.named_parameters() if "mlp" in n and p.grad is not None and p.grad.abs().sum() > 0}
    assert moved == {"glimpse.mlp.2.weight", "glimpse.mlp.2.bias", "classifier_mlp.2.weight", "classifier_mlp.2.bias"}
    for key in BRANCHES:
        with pytest.raises(ValueError, match=f"{key} must be an integer >= 0, got -1"):
            RecurrentAttention((1, 16, 16), **{key: -1}, **TINY)
    for key in ("locator_reads_location", "locator_reads_glimpse"):
        with pytest.raises(ValueError, match=f"{key} must be true or false, got 1"):
            RecurrentAttention((1, 16, 16), **{key: 1}, **TINY)


@pytest.mark.parametrize("core", ["lstm", "rnn"])
def test_a_wider_core_grown_from_a_model_starts_as_that_model(core: str) -> None:
    torch.manual_seed(0)
    small = RecurrentAttention((1, 16, 16), core=core, **BRANCHES, **TINY)  # glimpse_dim == hidden: both 32
    wide = RecurrentAttention((1, 16, 16), core=core, **BRANCHES, **{**TINY, "hidden": 40})
    wide.load_state_dict(grow_hidden(small.state_dict(), wide.state_dict(), prefix=""))
    x = torch.rand(4, 1, 16, 16)
    a, b = small(x, generator=torch.Generator().manual_seed(2)), wide(x, generator=torch.Generator().manual_seed(2))
    for field in ("logits", "locations", "log_prob", "baseline"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field))
    # the 8 new units start random, not dead, and one classification step reaches them
    rows = wide.core.cell.weight_ih.view(4, 40, -1) if core == "lstm" else wide.core.fc_g.weight.view(1, 40, -1)
    assert rows[:, 32:].abs().sum() > 0
    wide.zero_grad()
    hybrid_loss(wide(x), torch.arange(4)).loss_ce.backward()
    assert wide.classifier.weight.grad[:, 32:].abs().sum() > 0
    # a narrower core is not cut down: its weights pass unchanged, for load_weights to refuse
    assert grow_hidden(wide.state_dict(), small.state_dict(), prefix="")["classifier.weight"].shape == (10, 40)


def locator_step(lr: float = 1e-3, **hparams: float) -> tuple[dict[str, torch.Tensor], int]:
    """One Adam step of a fresh model on the full hybrid loss (no clip): how far each part moved, and how
    many parameter groups the optimiser has."""
    torch.manual_seed(0)
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), lr=lr, **hparams)
    before = {k: v.clone() for k, v in lit.net.state_dict().items()}
    opt = lit.configure_optimizers()["optimizer"]
    x, y = torch.rand(32, 1, 16, 16), torch.randint(0, 10, (32,))
    hybrid_loss(lit.net(x, generator=torch.Generator().manual_seed(1)), y, lit.hparams.reinforce_weight).loss.backward()
    opt.step()
    return {k: v - before[k] for k, v in lit.net.state_dict().items()}, len(opt.param_groups)


def test_the_copies_baseline_is_the_mean_return_of_the_other_paths_through_the_image() -> None:
    R = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])  # two images, three paths each
    b = torch.full((6, 4), 0.5)  # (B, T) a learned baseline, unused by "copies"
    want = torch.tensor([0.5, -1.0, 0.5, 1.0, -0.5, -0.5])  # path 0: 1 - mean(0, 1); path 4: 0 - mean(1, 0)
    torch.testing.assert_close(advantage_of(R, b, "copies", 3), want[:, None].expand(6, 4))
    torch.testing.assert_close(advantage_of(R, b, "learned", 3), R[:, None] - b)
    with pytest.raises(ValueError, match="needs at least 2 copies per image, got 1"):
        advantage_of(R, b, "copies", 1)
    with pytest.raises(ValueError, match="baseline must be one of"):
        advantage_of(R, b, "mean", 3)


def test_the_copies_baseline_needs_copies_in_training_and_falls_back_to_b_t_for_one_path() -> None:
    with pytest.raises(ValueError, match="'copies' only with mc_train >= 2; got 'copies'"):
        RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), baseline="copies")
    torch.manual_seed(0)
    lit = RAMLitModule({"kind": "ram", "std": 0.3, **TINY}, (1, 16, 16), baseline="copies", mc_train=2)
    x, y = torch.rand(6, 1, 16, 16), torch.randint(0, 10, (6,))
    out = lit.net(x, generator=torch.Generator().manual_seed(0))
    one_path = lit.loss(out, y, copies=1)  # mc_eval=1: no other copies, so b_t is the baseline
    assert one_path.loss_reinforce.item() == pytest.approx(hybrid_loss(out, y).loss_reinforce.item())
    paired = lit.loss(out, y, copies=2)
    expected = hybrid_loss(out, y, copies=2, baseline="copies").loss_reinforce.item()
    assert paired.loss_reinforce.item() == pytest.approx(expected)


def test_distillation_pulls_each_path_towards_the_mean_of_its_copies() -> None:
    torch.manual_seed(0)
    model = RecurrentAttention((1, 16, 16), std=0.3, **TINY)
    x, y = torch.rand(4, 1, 16, 16).repeat_interleave(3, 0), torch.randint(0, 10, (4,)).repeat_interleave(3)
    out = model(x, generator=torch.Generator().manual_seed(0))  # three paths through each image
    plain, distilled = hybrid_loss(out, y), hybrid_loss(out, y, copies=3, distill_weight=0.5)
    log_p = out.logits.log_softmax(-1).view(4, 3, 10)
    teacher = log_p.exp().mean(1, keepdim=True)
    kl = (teacher * (teacher.log() - log_p)).sum(-1).mean()
    assert kl > 0 and distilled.loss_distill.item() == pytest.approx(kl.item(), rel=1e-5)
    assert plain.loss_distill.item() == 0  # one copy per image: nothing to distil
    assert distilled.loss.item() == pytest.approx(plain.loss.item() + 0.5 * kl.item(), rel=1e-5)
    assert distillation(torch.randn(4, 10).repeat_interleave(3, 0), 3).item() == pytest.approx(0, abs=1e-6)
    distilled.loss_distill.backward()  # the teacher is detached; the policy learns from the reward alone
    assert {p for p, nonzero in grads_by_part(model).items() if nonzero} == {"glimpse", "core", "classifier"}
    with pytest.raises(ValueError, match="distill_weight must be >= 0, and > 0 only with mc_train >= 2"):
        RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), distill_weight=1.0)


def test_the_reinforce_weight_does_not_change_an_adam_step_of_the_policy() -> None:
    """The locator's only gradient is the REINFORCE term, and Adam cancels a constant scale of it."""
    heavy, _ = locator_step(reinforce_weight=1.0)
    light, _ = locator_step(reinforce_weight=0.01)
    for k in heavy:
        assert torch.allclose(heavy[k], light[k], atol=1e-4), k  # steps are ~lr = 1e-3 per weight


def test_policy_lr_scale_sets_the_policy_step_alone() -> None:
    base, groups = locator_step()
    assert groups == 1  # checkpoints saved before the knob existed still resume
    fast, groups = locator_step(policy_lr_scale=3.0)
    assert groups == 2
    for k in base:
        scale = 3.0 if k.startswith("locator.") else 1.0
        assert torch.allclose(fast[k], scale * base[k], atol=1e-7), k
    assert any(base[k].abs().sum() > 0 for k in base if k.startswith("locator."))


def test_lr_scale_sets_the_rate_of_named_parts() -> None:
    base, _ = locator_step()
    scaled, groups = locator_step(policy_lr_scale=3.0, lr_scale={"locator": {"fc": {"weight": 10}}, "classifier": 2})
    assert groups == 4  # the rest, the locator's bias, its weight, the classifier
    for k in base:
        scale = {"locator.fc.weight": 30.0, "locator.": 3.0, "classifier.": 2.0}
        want = next((v for prefix, v in scale.items() if k.startswith(prefix)), 1.0)
        assert torch.allclose(scaled[k], want * base[k], atol=1e-7), k
    net = {"kind": "ram", **TINY}
    with pytest.raises(ConfigError, match=r"model.lr_scale.locator.fcx is not allowed: no part .* locator.fc"):
        RAMLitModule(net, (1, 16, 16), lr_scale={"locator": {"fcx": 2}})
    with pytest.raises(ConfigError, match=r"model.lr_scale.core=0 is not allowed: must be a number > 0"):
        RAMLitModule(net, (1, 16, 16), lr_scale={"core": 0})


def test_label_smoothing_softens_the_cross_entropy_only() -> None:
    model = RecurrentAttention((1, 16, 16), **TINY)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    out = model(x, generator=torch.Generator().manual_seed(0))
    plain, smooth = hybrid_loss(out, y), hybrid_loss(out, y, label_smoothing=0.1)
    log_p = out.logits.log_softmax(-1)
    expected = -(0.9 * log_p.gather(1, y[:, None]).squeeze(1) + 0.1 * log_p.mean(-1)).mean()
    assert smooth.loss_ce.item() == pytest.approx(expected.item(), rel=1e-5)
    assert smooth.loss_ce.item() != pytest.approx(plain.loss_ce.item())
    for term in ("loss_reinforce", "loss_baseline", "reward"):  # the policy still learns from right or wrong
        assert getattr(smooth, term).item() == getattr(plain, term).item(), term
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), label_smoothing=1.0)


def test_the_prob_reward_is_the_label_probability_and_changes_only_the_policy_terms() -> None:
    model = RecurrentAttention((1, 16, 16), **TINY)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    out = model(x, generator=torch.Generator().manual_seed(0))
    correct, prob = hybrid_loss(out, y), hybrid_loss(out, y, reward="prob")
    p_label = out.logits.softmax(-1).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(reward_of(out.logits, y, "prob"), p_label)
    assert prob.reward.item() == pytest.approx(p_label.mean().item())
    assert correct.reward.item() == (out.logits.argmax(-1) == y).float().mean().item()
    expected_baseline = (out.baseline - p_label[:, None]).pow(2).sum(1).mean()
    assert prob.loss_baseline.item() == pytest.approx(expected_baseline.item(), rel=1e-5)
    assert prob.loss_ce.item() == correct.loss_ce.item()
    with pytest.raises(ValueError, match="reward must be one of"):
        reward_of(out.logits, y, "accuracy")
    with pytest.raises(ValueError, match="reward must be one of"):
        RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), reward="accuracy")


@pytest.mark.parametrize(
    "schedule, expected",
    [("exponential", [1.0, 0.5, 0.25, 0.2, 0.2]), ("cosine", [1.0, 0.6, 0.2, 0.2, 0.2])],
)
def test_learning_rate_schedules(schedule: str, expected: list[float]) -> None:
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), lr=1.0, lr_decay=0.5, lr_min=0.2, lr_schedule=schedule)
    lit.trainer = SimpleNamespace(max_epochs=2)  # the cosine reaches lr_min at the last epoch
    assert [lit._lr_factor(e) for e in range(5)] == pytest.approx(expected)


def test_an_unknown_schedule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="lr_schedule must be one of .*'linear'"):
        RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), lr_schedule="linear")


def corner_task(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1 iff a bright 12x12 block fills the top-left corner of a 32x32 canvas; a centred glimpse
    never sees it, so the policy has to learn to look there."""
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.zeros(n, 1, 32, 32)
    x[y == 1, :, :12, :12] = 1.0
    return x, y


@pytest.mark.parametrize("reward, locator_hidden", [("correct", 0), ("prob", 0), ("correct", 16)])
def test_locator_learns_to_look_at_the_informative_corner(reward: str, locator_hidden: int) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    tiny = dict(TINY, patch_size=6, num_scales=1, num_glimpses=2)
    model = RecurrentAttention(
        (1, 32, 32), num_classes=2, std=0.3, first_location="center", locator_hidden=locator_hidden, **tiny
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        x, y = corner_task(64, gen)
        terms = hybrid_loss(model(x), y, reinforce_weight=1.0, reward=reward)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
    x, y = corner_task(512, gen)
    with torch.no_grad():
        sampled, greedy = model(x), model(x, deterministic=True)
    assert (sampled.logits.argmax(-1) == y).float().mean() > 0.8  # chance is 0.5
    assert (greedy.logits.argmax(-1) == y).float().mean() > 0.9
    l_1 = greedy.locations[:, 1].mean(0)  # where the learned glimpse goes
    assert (l_1 < -0.3).all(), l_1


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_baseline_dropout_acts_in_training_only_and_keeps_the_weight_names(kind: str) -> None:
    x = torch.rand(4, 1, 28, 28)
    plain, dropped = (
        build_net({"kind": kind}, (1, 28, 28), 10),
        build_net({"kind": kind, "dropout": 0.5}, (1, 28, 28), 10),
    )
    assert list(plain.state_dict()) == list(dropped.state_dict())  # checkpoints load either way
    dropped.load_state_dict(plain.state_dict())
    assert not torch.equal(dropped(x).logits, plain(x).logits)
    dropped.eval(), plain.eval()
    torch.testing.assert_close(dropped(x).logits, plain(x).logits)


def test_ram_dropout_acts_on_the_classifier_in_training_only() -> None:
    x, gen = torch.rand(4, 1, 16, 16), lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plain = RecurrentAttention((1, 16, 16), std=0.3, **TINY)
    dropped = RecurrentAttention((1, 16, 16), std=0.3, dropout=0.5, **TINY)
    assert list(plain.state_dict()) == list(dropped.state_dict())
    dropped.load_state_dict(plain.state_dict())
    a, b = plain(x, generator=gen()), dropped(x, generator=gen())
    torch.testing.assert_close(a.locations, b.locations)  # same path: policy and baseline untouched
    torch.testing.assert_close(a.baseline, b.baseline)
    assert not torch.equal(a.logits, b.logits)
    torch.testing.assert_close(b.logits, dropped(x, generator=gen()).logits)  # the mask comes from the generator
    dropped.eval(), plain.eval()
    torch.testing.assert_close(dropped(x, generator=gen()).logits, plain(x, generator=gen()).logits)
    with pytest.raises(ValueError, match="dropout must be in"):
        RecurrentAttention((1, 16, 16), dropout=1.0, **TINY)


@pytest.mark.parametrize("kind", ["ram", "fc", "conv"])
def test_checkpoint_round_trip(tmp_path, kind: str) -> None:
    net = {"kind": kind, **TINY} if kind == "ram" else {"kind": kind}
    lit = RAMLitModule(net, (1, 28, 28), mc_train=2, mc_eval=3, recipe={"variant": "plain"})
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer = quiet_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(lit, loader, loader)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    back = RAMLitModule.load_from_checkpoint(path)
    assert back.hparams.recipe == {"variant": "plain"}
    lit.eval(), back.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x, deterministic=True).logits, lit(x, deterministic=True).logits)


def test_monte_carlo_evaluation_logs_both_errors() -> None:
    lit = RAMLitModule({"kind": "ram", **TINY}, (1, 16, 16), mc_train=3, mc_eval=4)
    x, y = torch.rand(12, 1, 16, 16), torch.randint(0, 10, (12,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(lit, loader, loader)
    train_keys = {
        "train/loss",
        "train/loss_ce",
        "train/loss_reinforce",
        "train/loss_baseline",
        "train/loss_distill",
        "train/reward",
    }
    assert {k + "_epoch" for k in train_keys | {"train/err"}} <= set(trainer.callback_metrics)
    metrics = trainer.validate(lit, loader, verbose=False)[0]
    assert {"val/err", "val/err_mc", "val/err_per_path", "val/loss_ce", "val/reward"} <= set(metrics)
    assert 0 <= metrics["val/err_mc"] <= 100
    pred = trainer.predict(lit, loader)[0]
    assert pred["probs"].shape == (6, 10) and pred["locations"].shape == (6, 3, 2)
    torch.testing.assert_close(pred["probs"].sum(-1), torch.ones(6))


def test_the_per_path_error_judges_each_sampled_path_alone() -> None:
    x, y = torch.rand(12, 1, 16, 16), torch.randint(0, 10, (12,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    lit = RAMLitModule({"kind": "ram", **TINY, "std": 0.5}, (1, 16, 16), mc_eval=5)
    tested = quiet_trainer().test(lit, loader, verbose=False)[0]
    wrong = []
    for i, (xb, yb) in enumerate(loader):  # the test step's own draws: M copies of each image, one generator
        with torch.no_grad():
            out = lit.eval()(xb.repeat_interleave(5, 0), generator=lit._generator(xb, "test", i))
        wrong.append((out.logits.argmax(-1).view(6, 5) != yb[:, None]).float())
    wrong = torch.cat(wrong)  # (12, 5): path j of image i right or wrong
    assert tested["test/err_per_path"] == pytest.approx(100.0 * wrong.mean().item())
    assert tested["test/err"] == pytest.approx(100.0 * wrong[:, 0].mean().item())  # one draw: the first path


def test_the_policy_mean_error_is_its_own_pass_and_leaves_the_sampled_errors_alone(monkeypatch) -> None:
    x, y = torch.rand(12, 1, 16, 16), torch.randint(0, 10, (12,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    centred = RAMLitModule({"kind": "ram", **TINY, "std": 0.5, "first_location": "center"}, (1, 16, 16), mc_eval=4)
    tested = quiet_trainer().test(centred, loader, verbose=False)[0]
    with torch.no_grad():
        wrong = centred.eval()(x, deterministic=True).logits.argmax(-1) != y
    assert tested["test/err_deterministic"] == pytest.approx(100.0 * wrong.float().mean().item())
    uniform = RAMLitModule({"kind": "ram", **TINY, "std": 0.5, "first_location": "uniform"}, (1, 16, 16), mc_eval=4)
    tested = quiet_trainer().test(uniform, loader, verbose=False)[0]
    monkeypatch.setattr(RAMLitModule, "_test_deterministic", lambda *args: None)
    without = quiet_trainer().test(uniform, loader, verbose=False)[0]
    assert "test/err_deterministic" not in without
    assert (without["test/err"], without["test/err_mc"]) == (tested["test/err"], tested["test/err_mc"])
