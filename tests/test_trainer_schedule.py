"""LR schedule (linear warmup, cosine to 10% of peak) and the loss-spike guard's decisions."""
import math

import pytest
import torch

from trainer.config import GuardConfig, OptimConfig, load_config
from trainer.guard import SpikeGuard
from trainer.schedule import lr_at, scheduler


def test_lr_at_start_warmup_and_end():
    peak, warm, total = 3e-4, 2000, 10000
    assert lr_at(0, peak, warm, total, 0.1) == pytest.approx(peak / 2000)
    assert lr_at(999, peak, warm, total, 0.1) == pytest.approx(peak / 2)
    assert lr_at(1999, peak, warm, total, 0.1) == pytest.approx(peak)
    assert lr_at(2000, peak, warm, total, 0.1) == pytest.approx(peak)
    assert lr_at(6000, peak, warm, total, 0.1) == pytest.approx(0.55 * peak)  # cosine midpoint
    assert lr_at(10000, peak, warm, total, 0.1) == pytest.approx(0.1 * peak)
    assert lr_at(20000, peak, warm, total, 0.1) == pytest.approx(0.1 * peak)


def test_scheduler_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    s = scheduler(opt, OptimConfig(lr=1e-3, warmup_steps=4, min_lr_ratio=0.1), total_steps=12)
    seen = []
    for _ in range(13):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    assert seen[0] == pytest.approx(2.5e-4) and seen[3] == pytest.approx(1e-3)
    assert seen[12] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(seen[4:], seen[5:]))


def test_guard_skips_nonfinite_and_spikes_only():
    g = SpikeGuard(GuardConfig(window=20, k_sigma=4.0, min_history=5))
    assert g.verdict(float("nan")) == "nonfinite_loss"
    assert g.verdict(float("inf")) == "nonfinite_loss"
    for x in [3.0, 3.1, 2.9, 3.05, 2.95, 3.0]:
        assert g.verdict(x) is None
        g.accept(x)
    assert g.verdict(3.2) is None          # within noise
    assert g.verdict(9.0) == "loss_spike"  # far above mean + 4σ
    g2 = SpikeGuard(GuardConfig(window=20, k_sigma=4.0, min_history=5))
    g2.load_state_dict(g.state_dict())
    assert g2.verdict(9.0) == "loss_spike"


def test_config_overrides_and_model_preset():
    cfg = load_config("conf/train/tiny.yaml", ["optim.lr=1e-4", "model.n_layers=3", "data.stages=[1,3]",
                                               "guard.enabled=false"])
    assert cfg.optim.lr == 1e-4 and cfg.model.n_layers == 3 and cfg.data.stages == (1, 3)
    assert cfg.guard.enabled is False and cfg.optim.betas == (0.9, 0.95)
    with pytest.raises(KeyError):
        load_config("conf/train/tiny.yaml", ["optim.lrr=1"])
    with pytest.raises(Exception):
        cfg.optim.lr = 1.0  # frozen
