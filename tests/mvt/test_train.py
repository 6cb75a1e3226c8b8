"""SynthMotion trainer: schedule, optimisation, checkpoint + metadata, determinism, `.synth` registration, and
the shipped demo weights (accurate on fresh clips, and they need the frame order)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

import mvt
from mvt import assets, synth, zoo
from mvt.train import (
    TrainConfig,
    evaluate,
    lr_at,
    make_optimizer,
    motion_init,
    read_metadata,
    to_input,
    train,
    train_step,
)

WEIGHTS_DIR = assets.WEIGHTS
SHIPPED = sorted(WEIGHTS_DIR.glob("*.synth.safetensors"))

TINY_SPEC = mvt.ModelSpec(
    name="tiny.untrained",
    arch="tiny",
    tag="untrained",
    num_frames=4,
    frame_stride=1,
    crop_size=32,
    resize_size=32,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
    label_set="synthmotion",
)


class TinyVideoNet(nn.Module):
    """A few thousand parameters: enough to test the training loop, not to learn SynthMotion."""

    def __init__(self, num_classes: int = len(synth.CLASSES)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(1, 4, 4))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))  # (B, 8)
        return self.head(self.norm(h))


def test_to_input_matches_preprocess():
    clip = synth.generate(1, 0, frames=4, size=32).clips
    np.testing.assert_allclose(
        to_input(clip, TINY_SPEC).numpy(), mvt.preprocess(clip[0], TINY_SPEC).numpy(), rtol=0, atol=1e-6
    )
    with pytest.raises(ValueError, match="model wants"):
        to_input(synth.generate(1, 0, frames=4, size=48).clips, TINY_SPEC)


def test_lr_schedule_warms_up_then_decays_to_floor():
    cfg = TrainConfig.from_flat(arch="tiny", lr=1e-3, warmup_steps=10, min_lr_ratio=0.01)
    lrs = [lr_at(s, 100, cfg.optim) for s in range(100)]
    assert lrs[:10] == sorted(lrs[:10]) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10:] == sorted(lrs[10:], reverse=True)
    assert lr_at(100, 100, cfg.optim) == pytest.approx(1e-5)
    # The warm-up does not depend on the total, so a time-budgeted run is reproducible with --steps.
    assert [lr_at(s, 50, cfg.optim) for s in range(10)] == lrs[:10]


def test_weight_decay_skips_biases_and_norms():
    opt = make_optimizer(TinyVideoNet(), TrainConfig.from_flat(arch="tiny", weight_decay=0.05).optim)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and all(p.ndim > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])


def test_train_step_reduces_the_loss_on_a_batch():
    torch.manual_seed(0)
    model = TinyVideoNet()
    data = synth.generate(16, 0, frames=4, size=32)
    x, y = to_input(data.clips, TINY_SPEC), torch.from_numpy(data.labels)
    opt = make_optimizer(model, TrainConfig.from_flat(arch="tiny").optim)
    losses = [train_step(model, opt, x, y, lr=1e-2, label_smoothing=0.0)[0] for _ in range(40)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0]


def _tiny_run(
    tmp_path: Path, seed: int = 0, steps: int = 3, init: Path | None = None
) -> tuple[nn.Module, Path]:
    torch.manual_seed(123)  # train() reseeds; this must not matter
    model = TinyVideoNet()
    cfg = TrainConfig.from_flat(
        arch="tiny",
        seed=seed,
        steps=steps,
        batch_size=4,
        eval_clips=8,
        warmup_steps=2,
        init=None if init is None else str(init),
    )
    result = train(cfg, out=tmp_path, model=model, spec=TINY_SPEC, log=lambda s: None)
    assert result.steps == steps and result.path is not None
    assert 0.0 <= result.accuracy <= 1.0 and 0.0 <= result.shuffled_accuracy <= 1.0
    return model, result.path


def test_train_writes_checkpoint_with_metadata(tmp_path):
    model, path = _tiny_run(tmp_path)
    assert path == tmp_path / "tiny.synth.safetensors"
    meta = read_metadata(path)
    assert json.loads(meta["classes"]) == list(synth.CLASSES)
    assert meta["arch"] == "tiny" and meta["seed"] == "0" and meta["steps"] == "3"
    assert json.loads(meta["config"])["batch_size"] == 4
    assert 0.0 <= float(meta["accuracy"]) <= 1.0 and float(meta["minutes"]) >= 0.0
    assert len(meta["commit"]) == 40 or meta["commit"] == "unknown"
    state = mvt.weights.load_file(path)
    fresh = TinyVideoNet()
    zoo.load_state_dict_strict(fresh, state)
    x = to_input(synth.generate(2, 9, frames=4, size=32).clips, TINY_SPEC)
    torch.testing.assert_close(fresh.eval()(x), model.eval()(x))


def test_checkpoint_records_every_run_it_continues(tmp_path):
    import hashlib

    _, first = _tiny_run(tmp_path / "a", seed=0, steps=2)
    _, second = _tiny_run(tmp_path / "b", seed=1, steps=3, init=first)
    _, third = _tiny_run(tmp_path / "c", seed=2, steps=2, init=second)
    assert json.loads(read_metadata(first)["lineage"]) == []
    chain = json.loads(read_metadata(third)["lineage"])
    assert [(e["role"], e["config"]["seed"], e["steps"]) for e in chain] == [
        ("init", 0, "2"),
        ("init", 1, "3"),
    ]
    assert chain[1]["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    assert (
        chain[1]["config"]["init"] == str(first) and chain[0]["accuracy"] == read_metadata(first)["accuracy"]
    )


def test_training_is_deterministic_per_seed(tmp_path):
    a, _ = _tiny_run(tmp_path / "a", seed=0)
    b, _ = _tiny_run(tmp_path / "b", seed=0)
    c, _ = _tiny_run(tmp_path / "c", seed=1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_real_family_trains_and_loads_through_the_zoo(tmp_path):
    """Two steps of hvt_t (a real video family) end to end; create_model loads the file it writes."""
    cfg = TrainConfig.from_flat(arch="hvt_t", steps=2, batch_size=2, eval_clips=2, warmup_steps=1)
    result = train(cfg, out=tmp_path, log=lambda s: None)
    model = mvt.create_model("hvt_t.untrained", checkpoint=str(result.path))
    meta = read_metadata(result.path)
    assert meta["arch"] == "hvt_t" and meta["dtype"] == "float32"
    assert result.path.stat().st_size <= 10 * 2**20
    spec = mvt.get_spec("hvt_t.untrained")
    x = to_input(synth.generate(1, 3, frames=spec.num_frames, size=spec.crop_size).clips, spec)
    with torch.inference_mode():
        assert model(x).shape == (1, len(synth.CLASSES))


def test_synth_weights_register_in_the_zoo(tmp_path, monkeypatch):
    zoo.list_models()  # register everything first: registering into the patched copy would leave the real one empty
    monkeypatch.setattr(zoo, "_SPECS", dict(zoo._SPECS))
    arch = "hvt_t"
    model = zoo.get_arch(arch).builder(num_classes=len(synth.CLASSES))
    from mvt.train import save_checkpoint

    meta = {"classes": json.dumps(list(synth.CLASSES)), "accuracy": "0.9712"}
    save_checkpoint(model, tmp_path / f"{arch}.synth.safetensors", meta)
    zoo._SPECS.pop(f"{arch}.synth", None)
    assert zoo.register_synth_weights(str(tmp_path)) == [f"{arch}.synth"]
    spec = zoo.get_spec(f"{arch}.synth")
    default = zoo.get_spec(f"{arch}.untrained")
    assert spec.trained and spec.label_set == "synthmotion" and spec.labels == synth.CLASSES
    assert "97% top-1" in spec.description
    assert (spec.num_frames, spec.crop_size, spec.mean, spec.std) == (
        default.num_frames,
        default.crop_size,
        default.mean,
        default.std,
    )
    assert spec.frame_stride == 1 and spec.resize_size == spec.crop_size
    loaded = zoo.create_model(f"{arch}.synth")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


class ConstantModel(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((x.shape[0],), self.k), len(synth.CLASSES)).float()


def test_evaluate_counts_correct_clips():
    # Labels are balanced in blocks of 8, so always answering one class scores exactly 1/8 either way.
    for shuffle in (False, True):
        assert (
            evaluate(ConstantModel(3), TINY_SPEC, n=16, seed=5, batch_size=5, shuffle_frames=shuffle) == 0.125
        )


def test_curriculum_fades_out_and_starts_independently_of_steps():
    from mvt.train import easy_fraction

    cfg = TrainConfig.from_flat(arch="tiny", warmup_steps=10, curriculum=0.3)
    fr = [easy_fraction(s, 100, cfg) for s in range(100)]
    assert fr[:10] == [1.0] * 10 and fr[30:] == [0.0] * 70
    assert fr[10:31] == sorted(fr[10:31], reverse=True)
    assert [easy_fraction(s, 1000, cfg) for s in range(10)] == fr[:10]
    assert easy_fraction(0, 100, cfg.replace(curriculum=0.0)) == 0.0


# -- the shipped demo weights -----------------------------------------------------------------------------
# Parametrised over mvt/assets/weights/*.synth.safetensors: every file that ships must pass it.


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name.split(".")[0] for p in SHIPPED])
def test_shipped_checkpoint_is_accurate_and_uses_time(path):
    """≥ 90% top-1 on 200 fresh clips of a seed no training run uses; shuffling the frames drops it far."""
    arch = path.name.split(".")[0]
    name = f"{arch}.synth"
    assert name in mvt.list_models(), f"{path.name} is not registered as {name}"
    model = mvt.create_model(name)
    spec = model.spec
    assert spec.trained and spec.labels == synth.CLASSES
    meta = read_metadata(path)
    assert int(meta["eval_clips"]) >= 200 and float(meta["accuracy"]) >= 0.9
    lineage = json.loads(meta["lineage"])  # the runs it was continued / warm-started from, oldest first
    assert all(len(e["sha256"]) == 64 and e["role"] in ("init", "warm_start") for e in lineage)
    init = json.loads(meta["config"])["init"]
    assert not init or lineage[-1]["file"] == Path(init).name
    seed = 424_242  # not a training stream (those are small seeds) nor the recorded eval stream
    assert str(seed) != meta["eval_seed"]
    acc = evaluate(model, spec, n=200, seed=seed)
    shuffled = evaluate(model, spec, n=200, seed=seed, shuffle_frames=True)
    assert acc >= 0.9, f"{name}: {acc:.3f} top-1"
    assert shuffled <= 0.6 * acc, f"{name}: {shuffled:.3f} with shuffled frames vs {acc:.3f}"


def test_init_continues_from_a_checkpoint(tmp_path):
    first, path = _tiny_run(tmp_path / "a")
    second = TinyVideoNet()
    cfg = TrainConfig.from_flat(arch="tiny", steps=0, batch_size=4, eval_clips=8, init=str(path))
    train(cfg, out=tmp_path / "b", model=second, spec=TINY_SPEC, log=lambda s: None)
    for (k, v), w in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(v, w), k


def test_motion_init_splits_embeddings_into_flat_and_zero_sum_ramp_channels():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 6, (4, 5, 5)), nn.Conv3d(6, 6, (3, 3, 3), groups=6), nn.Conv3d(3, 4, (1, 3, 3))
    )
    before = [m.weight.detach().clone() for m in model]
    # only the RGB conv with a temporal kernel changes; depthwise pools and 2-D kernels are untouched
    assert motion_init(model) == 1
    w = model[0].weight.detach()  # (6, 3, 4, 5, 5)
    for o in range(6):
        taps = w[o].permute(1, 0, 2, 3).reshape(4, -1)  # (kt, rest)
        if o % 2 == 0:
            assert torch.allclose(taps, taps[:1].expand_as(taps))  # constant in time: sees appearance
        else:
            # zero-sum in time: blind to static content
            assert torch.allclose(taps.sum(0), torch.zeros_like(taps[0]), atol=1e-6)
    assert torch.equal(model[1].weight, before[1]) and torch.equal(model[2].weight, before[2])
    static = torch.randn(1, 3, 1, 8, 8).expand(1, 3, 4, 8, 8)
    assert model[0](static)[:, 1::2].sub(model[0].bias[1::2].view(1, -1, 1, 1, 1)).abs().max() < 1e-5


def test_buffered_augmented_training_is_deterministic(tmp_path):
    def run(sub: str, seed: int = 0) -> nn.Module:
        torch.manual_seed(99)
        model = TinyVideoNet()
        cfg = TrainConfig.from_flat(
            arch="tiny",
            seed=seed,
            steps=4,
            batch_size=4,
            eval_clips=4,
            warmup_steps=2,
            buffer_clips=8,
            fresh_per_step=2,
            motion_init=True,
            eval_every=2,
            eval_every_clips=4,
        )
        logs: list[str] = []
        train(cfg, out=tmp_path / sub, model=model, spec=TINY_SPEC, log=logs.append)
        assert any("held-out" in line for line in logs) and any("motion_init: 1" in line for line in logs)
        return model

    a, b, c = run("a"), run("b"), run("c", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_warm_start_copies_what_matches_and_reports_the_rest():
    from mvt.train import warm_start

    src = zoo.get_arch("vivit_t1").builder(num_classes=8).state_dict()
    model = zoo.get_arch("vivit_t3").builder(num_classes=8)
    left, unused = warm_start(model, src)
    own = model.state_dict()
    assert left and all("attn_t" in k or "norm_t" in k for k in left), left  # the new temporal sublayers
    assert unused == ["encoder.cls_token"]  # model 3 has no CLS in its encoder
    assert torch.equal(own["encoder.pos_embed"], src["encoder.pos_embed"][:, 1:])
    assert torch.equal(own["encoder.blocks.0.attn.qkv.weight"], src["encoder.blocks.0.attn.qkv.weight"])


def test_warm_start_from_hvt_t_fills_vivit_blocks():
    from mvt.train import WARM_START_RENAMES, warm_start

    src = zoo.get_arch("hvt_t").builder(num_classes=8).state_dict()
    model = zoo.get_arch("vivit_t1").builder(num_classes=8)
    left, unused = warm_start(model, src, WARM_START_RENAMES[("hvt", "vivit")])
    assert left == ["encoder.cls_token"], left
    assert all(
        k.startswith(("blocks.4.", "blocks.5.", "blocks.6.", "blocks.7.")) or k.endswith("pos_embed")
        for k in unused
    ), unused  # deeper HVT blocks and the pooled stages' embeddings
    own = model.state_dict()
    assert torch.equal(own["encoder.pos_embed"][:, 1:], src["pos_embed"])
    assert torch.equal(own["encoder.blocks.3.mlp.fc2.weight"], src["blocks.3.mlp.fc2.weight"])
    assert torch.equal(own["patch_embed.weight"], src["patch_embed.proj.weight"])


def test_warm_start_averages_space_time_positions_for_a_spatial_encoder():
    from mvt.train import WARM_START_RENAMES, warm_start

    src = zoo.get_arch("hvt_t").builder(num_classes=8).state_dict()
    model = zoo.get_arch("vivit_t2").builder(num_classes=8)
    left, _ = warm_start(model, src, WARM_START_RENAMES[("hvt", "vivit")])
    assert "encoder.pos_embed" not in left and all(
        k.startswith(("temporal_encoder", "encoder.cls")) for k in left
    )
    pos = model.state_dict()["encoder.pos_embed"]  # (1, 1 + 49, D)
    torch.testing.assert_close(pos[:, 1:], src["pos_embed"].view(1, 8, 49, -1).mean(1))


def test_focus_classes_oversample_the_hard_pair(tmp_path, monkeypatch):
    """``focus_share`` of every batch comes from the focus classes (symmetries keep rotations rotations)."""
    import mvt.train.run as train_mod

    seen: list[np.ndarray] = []
    real_step = train_mod.train_step

    def spy(model, optimizer, x, y, **kw):
        seen.append(y.numpy().copy())
        return real_step(model, optimizer, x, y, **kw)

    monkeypatch.setattr(train_mod, "train_step", spy)
    focus = ("rotate_cw", "rotate_ccw")
    cfg = TrainConfig.from_flat(
        arch="tiny",
        steps=4,
        batch_size=8,
        eval_clips=2,
        warmup_steps=1,
        buffer_clips=32,
        fresh_per_step=2,
        focus_classes=focus,
        focus_share=0.75,
    )
    train(cfg, model=TinyVideoNet(), spec=TINY_SPEC, log=lambda s: None)
    ids = [synth.CLASSES.index(c) for c in focus]
    assert len(seen) == 4 and all(np.isin(y, ids).sum() >= 6 for y in seen)  # uniform sampling: ~2 of 8
    with pytest.raises(ValueError, match="unknown"):
        train(cfg.replace(focus_classes=("spin",)), model=TinyVideoNet(), spec=TINY_SPEC, log=lambda s: None)
    with pytest.raises(ValueError, match="buffer"):
        train(cfg.replace(buffer_clips=0), model=TinyVideoNet(), spec=TINY_SPEC, log=lambda s: None)


# -- actor-mask moments (mvt.supervision) ----------------------------------------------------------------------


def test_mask_moments_locate_and_orient_the_actor():
    from mvt.supervision import mask_moments

    masks = np.zeros((1, 4, 20, 40), bool)
    masks[0, :2, 2:6, 0:20] = True  # frames 0-1: a wide bar in the top-left quarter
    masks[0, 2, 10:20, 30:32] = True  # frame 2: a tall bar at the right; frame 3 empty
    moments, valid = mask_moments(masks, bins=4)
    assert valid.tolist() == [[True, True, True, False]]
    cx, cy, e1, e2 = moments[0, 0, :4]
    np.testing.assert_allclose([cx, cy], [(10 / 40) * 2 - 1, (4 / 20) * 2 - 1], atol=1e-6)
    assert e1 > 0.5 and abs(e2) < 1e-6  # wide (0.4 × 1.0 in normalised units)
    assert moments[0, 2, 2] < -0.9  # tall
    assert (moments[0, 3] == 0).all()
    diag = np.eye(16, dtype=bool)[None, None]  # a diagonal line, top-left to bottom-right
    assert mask_moments(diag, 1)[0][0, 0, 3] > 0.99
    # transposing the frames swaps x and y and flips the sign of (xx - yy), as the symmetry op does
    t = mask_moments(synth.apply_symmetry(masks[0], 1)[None], bins=4)[0]
    np.testing.assert_allclose(
        t[0, :3][:, [1, 0, 2, 3, 5, 4]] * [1, 1, -1, 1, 1, 1], moments[0, :3], atol=1e-6
    )
    assert (moments[0, :, 4:] == 0).all()  # one frame per bin: no motion inside a bin
    with pytest.raises(ValueError, match="equal time bins"):
        mask_moments(masks, bins=3)


def test_mask_moments_give_the_direction_of_motion_inside_each_bin():
    from mvt.supervision import mask_moments

    masks = np.zeros((2, 4, 32, 32), bool)
    for f in range(4):
        masks[0, f, 10:14, 2 + 3 * f : 6 + 3 * f] = True  # moves right, 3 px per frame
        masks[1, f, 16 - f : 18 + f, 16 - f : 18 + f] = True  # grows in place
    moments, valid = mask_moments(masks, bins=2)
    assert valid.all()
    np.testing.assert_allclose(moments[0, :, 4:], [[1, 0], [1, 0]], atol=1e-6)
    assert (moments[1, :, 4:] == 0).all()
    # time reversal (symmetry 8) turns the direction around
    back = mask_moments(synth.apply_symmetry(masks[0], 8)[None], bins=2)[0]
    np.testing.assert_allclose(back[0, :, 4:], [[-1, 0], [-1, 0]], atol=1e-6)


class GridNet(TinyVideoNet):
    """TinyVideoNet with a stage tap on its conv grid, so the mask-moments loss has tokens to read."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4))  # 4 frames -> 2 time steps
        self.stage_taps = nn.ModuleList([nn.Identity()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.stage_taps[0](torch.relu(self.conv(x)))  # (B, 8, T', H', W')
        return self.head(self.norm(g.mean(dim=(2, 3, 4))))


def test_mask_moments_loss_trains_with_the_model(tmp_path):
    torch.manual_seed(0)
    logs: list[str] = []
    cfg = TrainConfig.from_flat(
        arch="tiny",
        steps=20,
        batch_size=4,
        eval_clips=4,
        warmup_steps=2,
        lr=1e-2,
        log_every=10,
        buffer_clips=8,
        mask_weight=1.0,
        mask_stage=0,
        curriculum=0.0,
    )
    train(cfg, out=None, model=GridNet(), spec=TINY_SPEC, log=logs.append)
    mask_logs = [float(line.split(" mask ")[1]) for line in logs if " mask " in line]
    assert len(mask_logs) == 2 and all(np.isfinite(mask_logs))
    assert mask_logs[-1] < mask_logs[0]
    with pytest.raises(ValueError, match="needs the batch's masks"):
        from mvt.supervision import MaskMoments

        model = GridNet()
        train_step(
            model,
            make_optimizer(model, cfg.optim),
            torch.zeros(1, 3, 4, 32, 32),
            torch.zeros(1, dtype=torch.long),
            lr=0.1,
            moments=MaskMoments(8, stage=0),
        )


def test_step_classes_score_every_time_step_against_the_clip_label():
    from mvt.supervision import StepClasses

    torch.manual_seed(0)
    head = StepClasses(8, len(synth.CLASSES), stage=0, weight=2.0, smoothing=0.0)
    grid = torch.randn(3, 8, 5, 2, 2)  # (B, C, T, H, W)
    labels = torch.tensor([0, 4, 7])
    logits = head(grid)
    assert logits.shape == (3, 5, len(synth.CLASSES))
    by_hand = np.mean(
        [float(F.cross_entropy(logits[b, t][None], labels[b][None])) for b in range(3) for t in range(5)]
    )
    assert float(head.loss(grid, labels)) == pytest.approx(2.0 * by_hand, rel=1e-5)
    assert head.history == [pytest.approx(2.0 * by_hand, rel=1e-5)]
    # each step's logits depend on that step's tokens only
    moved = grid.clone()
    moved[:, :, 2] += torch.randn(3, 8, 2, 2)
    same = [t for t in range(5) if t != 2]
    assert torch.allclose(head(moved)[:, same], logits[:, same])
    assert not torch.allclose(head(moved)[:, 2], logits[:, 2])


def test_step_class_loss_trains_with_the_model(tmp_path):
    from mvt.supervision import StepClasses

    torch.manual_seed(0)
    logs: list[str] = []
    cfg = TrainConfig.from_flat(
        arch="tiny",
        steps=4,
        batch_size=4,
        eval_clips=4,
        warmup_steps=2,
        log_every=2,
        step_class_weight=1.0,
        step_class_stage=0,
        curriculum=0.0,
    )
    result = train(cfg, out=tmp_path, model=GridNet(), spec=TINY_SPEC, log=logs.append)
    assert any("per-time-step classes from stage 0" in line for line in logs)
    assert len([line for line in logs if " steps " in line]) == 2
    saved = set(mvt.weights.load_file(result.path))
    assert saved == set(GridNet().state_dict())  # the auxiliary head is not saved

    # on one fixed batch the per-step loss falls: its gradient reaches the head and the model
    model, head = GridNet(), StepClasses(8, len(synth.CLASSES), stage=0)
    optimizer = make_optimizer(nn.ModuleDict({"model": model, "head": head.proj}), cfg.replace(lr=1e-2).optim)
    batch = synth.generate(4, 3, frames=4, size=32)
    x, y = to_input(batch.clips, TINY_SPEC), torch.from_numpy(batch.labels)
    for _ in range(30):
        train_step(model, optimizer, x, y, lr=1e-2, step_classes=head)
    assert head.history[-1] < 0.5 * head.history[0]


def test_trainable_freezes_everything_else(tmp_path):
    from mvt.train import freeze_except

    model = GridNet()
    assert freeze_except(model, ["head"]) == 2
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    with pytest.raises(ValueError, match="names no parameters.*'conv'"):
        freeze_except(GridNet(), ["head", "hea"])

    start = GridNet()
    init = tmp_path / "start.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in start.state_dict().items()}, init)
    cfg = TrainConfig.from_flat(
        arch="tiny", steps=3, batch_size=4, eval_clips=4, warmup_steps=1, curriculum=0.0
    )
    out = train(
        cfg.replace(init=str(init), trainable=("head",)),
        out=tmp_path,
        model=GridNet(),
        spec=TINY_SPEC,
        log=print,
    )
    after = mvt.weights.load_file(out.path)
    assert torch.equal(after["conv.weight"], start.conv.weight) and torch.equal(
        after["norm.weight"], start.norm.weight
    )
    assert not torch.equal(after["head.weight"], start.head.weight)
