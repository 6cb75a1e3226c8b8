"""Distillation (training only): stage taps as grids, the hint and soft-logit losses, and a distilled run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvt import synth, zoo
from mvt.distill import Distiller, as_grid, capture_stage
from mvt.train import TrainConfig, read_metadata, save_checkpoint, train
from mvt.weights import load_file

K = len(synth.CLASSES)


def _clip(batch: int = 2, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, 3, 16, 112, 112)


def _random_teacher(tmp_path) -> Path:
    """An untrained hvt_t saved as mvt.train would save it (metadata names the arch)."""
    model = zoo.get_arch("hvt_t").builder(num_classes=K)
    return save_checkpoint(model, tmp_path / "hvt_t.synth.safetensors", {"arch": "hvt_t"})


def test_capture_stage_records_the_tap_and_unhooks():
    model = zoo.get_arch("mvit_t").builder(num_classes=K).eval()
    x = _clip(1)
    with torch.no_grad(), capture_stage(model, 1) as seen:
        model(x)
    assert len(seen) == 1 and seen[0].shape == (1, 64, 4, 7, 7)  # stage 1 of mvit_t: 64 channels on 4×7²
    with torch.no_grad():
        model(x)
    assert len(seen) == 1  # the hook is gone
    with pytest.raises(ValueError, match="no stage tap 7"), capture_stage(model, 7):
        pass


def test_hvt_first_stage_tap_unflattens_onto_the_embedding_grid():
    model = zoo.get_arch("hvt_t").builder(num_classes=K).eval()
    x = _clip(1)
    with torch.no_grad(), capture_stage(model, 0) as first, capture_stage(model, 1) as second:
        model(x)
    grid = as_grid(model, first[0])
    assert grid.shape == (1, 128, 8, 7, 7)
    # token n of the sequence is cell (t, h, w) with n = (t·7 + h)·7 + w
    torch.testing.assert_close(grid[0, :, 3, 2, 5], first[0][0, :, 0, 0, (3 * 7 + 2) * 7 + 5])
    with pytest.raises(ValueError, match="only stage 0"):
        as_grid(model, second[0])


def test_distiller_losses_train_the_student_and_leave_the_teacher_alone():
    teacher = zoo.get_arch("vivit_t1").builder(num_classes=K)
    student = zoo.get_arch("mvit_t").builder(num_classes=K)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = Distiller(teacher, 64, 128, student_stage=1, teacher_stage=0, kd_weight=0.0)
    distiller.train()
    assert not teacher.training  # the teacher stays in inference mode
    x = _clip(2)
    opt = torch.optim.Adam(list(student.parameters()) + list(distiller.proj.parameters()), lr=1e-3)
    hints = []
    for _ in range(4):
        with capture_stage(student, 1) as seen:
            logits = student.eval()(x)  # no dropout: the loss moves only by the updates
        losses = distiller.loss(logits, seen[-1], x)
        assert float(losses["kd"]) == 0.0 and losses["hint"] > 0  # kd_weight 0: no soft-logit term
        opt.zero_grad()
        (losses["hint"] + losses["kd"]).backward()
        opt.step()
        hints.append(float(losses["hint"].detach()))
    assert hints[-1] < 0.95 * hints[0]  # the student's stage-1 grid moves towards the teacher's
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    # identical logits: no soft-logit loss
    with torch.no_grad():
        t_logits, t_grid = distiller.targets(x)
    assert t_grid.shape == (2, 128, 8, 7, 7)
    torch.testing.assert_close(t_grid.mean(1), torch.zeros(2, 8, 7, 7), atol=1e-5, rtol=0)  # per-token LN
    distiller.kd_weight = 1.0
    same = distiller.loss(t_logits, torch.zeros(2, 64, 4, 7, 7), x)
    other = distiller.loss(torch.zeros_like(t_logits), torch.zeros(2, 64, 4, 7, 7), x)
    assert abs(float(same["kd"])) < 1e-6 < float(other["kd"])


def test_training_with_a_teacher_records_it_and_keeps_the_student_architecture(tmp_path):
    teacher_path = _random_teacher(tmp_path)
    cfg = TrainConfig.from_flat(
        arch="mvit_t",
        steps=2,
        batch_size=2,
        eval_clips=2,
        warmup_steps=1,
        teacher=str(teacher_path),
        kd_weight=0.5,
    )
    lines: list[str] = []
    result = train(cfg, out=tmp_path / "out", log=lines.append)
    assert any("distilling from" in line for line in lines)
    meta = read_metadata(result.path)
    assert json.loads(meta["config"])["teacher"] == str(teacher_path)
    # the student's checkpoint holds the student only (no projection): a strict load succeeds
    zoo.load_state_dict_strict(zoo.get_arch("mvit_t").builder(num_classes=K), load_file(result.path))


def test_a_teacher_without_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    cfg = TrainConfig.from_flat(
        arch="mvit_t", steps=1, batch_size=2, eval_clips=2, warmup_steps=1, teacher=str(path)
    )
    with pytest.raises(ValueError, match="no 'arch'"):
        train(cfg, log=lambda s: None)


def test_soft_logits_alone_need_no_stage_grid(tmp_path):
    """``hint_weight=0``: only the teacher's logits are used, so a one-stage student (ViViT) works too."""
    teacher_path = _random_teacher(tmp_path)
    cfg = TrainConfig.from_flat(
        arch="vivit_t4",
        steps=2,
        batch_size=2,
        eval_clips=2,
        warmup_steps=1,
        teacher=str(teacher_path),
        hint_weight=0.0,
        kd_weight=1.0,
        log_every=1,
    )
    lines: list[str] = []
    train(cfg, log=lines.append)
    steps = [line for line in lines if line.startswith("step ") and " kd " in line]
    kd = [float(line.split(" kd ")[1]) for line in steps]
    hint = [float(line.split(" hint ")[1].split()[0]) for line in steps]
    assert len(kd) == 2 and all(k > 0 for k in kd) and hint == [0.0, 0.0]
