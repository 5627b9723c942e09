"""The DeepSpeed loop on CPU (gloo): ZeRO-1/2 bf16 loss falls on real packed shards, the spike guard skips an
injected NaN batch, N + N resumed steps equal 2N steps bitwise (fp32), and two gloo ranks stay identical."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_train_config
from dataflow.trainset.demo import build
from trainer.hf import export_checkpoint, load_hf
from trainer.step import lm_loss_sum
from trainer.train import free_port, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mix(corpus_dir, tmp_path_factory):
    return build(corpus_dir / "docs.jsonl", tmp_path_factory.mktemp("mix"), seq_len=128, vocab_size=4000,
                 rows_per_stage=32, rows_per_shard=16)


def config(mix, out: Path, *overrides):
    return tiny_train_config(mix, out, "optim.warmup_steps=3", "micro_batch_size=4", "data.steps_per_stage=0", *overrides)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in open(out / "metrics.jsonl")]


@pytest.mark.parametrize("zero", [1, 2])
def test_bf16_zero_loss_falls_on_packed_shards(mix, tmp_path, zero):
    cfg = config(mix, tmp_path, f"deepspeed={ROOT}/conf/deepspeed/zero{zero}.json", "data.stages=[1]",
                 "data.epochs=[2]", "checkpoint.at_exit=false")
    summary, engine = train(cfg)
    assert summary["steps"] == 16 and summary["skipped"] == 0
    assert next(engine.module.parameters()).dtype == torch.bfloat16
    losses = [r["loss"] for r in records(tmp_path)]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in records(tmp_path))


def test_spike_guard_skips_an_injected_nan_batch(mix, tmp_path):
    calls = []

    def poisoned(model, batch, device):  # the 6th micro-batch's loss is NaN, as from a corrupt batch
        calls.append(1)
        loss = lm_loss_sum(model, batch, device)
        return loss * float("nan") if len(calls) == 6 else loss

    cfg = config(mix, tmp_path, "data.stages=[1]", "max_steps=9", "checkpoint.at_exit=false")
    summary, engine = train(cfg, loss_fn=poisoned)
    recs = records(tmp_path)
    assert summary["skipped"] == 1
    bad = recs[5]
    assert bad["skipped"] and bad["skip_reason"] == "nonfinite_loss"
    assert bad["lr"] == recs[4]["lr"]             # the schedule did not advance on the skipped step
    assert not any(r["skipped"] for r in recs[:5] + recs[6:])
    assert all(torch.isfinite(p).all() for p in engine.module.parameters())


def _final_weights(ckpt: Path, step: int) -> dict:
    sd = torch.load(ckpt / f"global_step{step}" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    return sd


def test_resume_n_plus_n_equals_2n_bitwise_fp32(mix, tmp_path):
    common = ("precision=fp32", f"deepspeed={ROOT}/conf/deepspeed/zero1.json", "max_steps=8", "grad_accum=2",
              "micro_batch_size=2")
    train(config(mix, tmp_path / "full", *common, "checkpoint.resume=false"))
    part = tmp_path / "split"
    s1, _ = train(config(mix, part, *common, "run_steps=4", "checkpoint.resume=true"))
    assert s1["steps"] == 4 and s1["stopped"]
    s2, _ = train(config(mix, part, *common, "checkpoint.resume=true"))
    assert s2["steps"] == 8
    full, split = _final_weights(tmp_path / "full" / "ckpt", 8), _final_weights(part / "ckpt", 8)
    assert next(iter(full.values())).dtype == torch.float32
    assert full.keys() == split.keys() and all(torch.equal(full[k], split[k]) for k in full)
    a = [r["loss"] for r in records(tmp_path / "full")]
    b = [r["loss"] for r in records(part)]
    assert a == b and len(a) == 8 and a[0] != a[-1]
    # the checkpoint exports as an HF model (consolidated fp32 masters) that re-imports identically
    hf_dir = export_checkpoint(part / "ckpt", tmp_path / "hf", dtype=None)
    cfg, sd = load_hf(hf_dir)
    assert cfg.dim == 64 and cfg.vocab_size == 4096
    assert sd.keys() == split.keys() and all(torch.equal(sd[k], split[k]) for k in sd)


WORKER = """
import hashlib, json, sys, torch
from trainer.config import load_config
from trainer.train import train
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]))
summary, engine = train(cfg)
h = hashlib.sha256()
for name, p in sorted(engine.module.state_dict().items()):
    h.update(p.detach().float().numpy().tobytes())
json.dump({"sha": h.hexdigest(), "summary": summary}, open(sys.argv[3], "w"))
"""


def test_two_gloo_ranks_with_zero2_keep_identical_weights(mix, tmp_path):
    overrides = [f"data.root={mix}", f"checkpoint.dir={tmp_path / 'ckpt'}", f"metrics.dir={tmp_path}",
                 "metrics.progress_bar=false", "metrics.tensorboard=false", "metrics.plot=false", "model.dim=64",
                 "model.ffn_dim=176", f"deepspeed={ROOT}/conf/deepspeed/zero2.json", "max_steps=6",
                 "micro_batch_size=2", "checkpoint.at_exit=false", "data.stages=[1]", "data.steps_per_stage=0"]
    procs = []
    port = str(free_port())
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT / "conf/train/tiny.yaml"),
                                       json.dumps(overrides), str(tmp_path / f"rank{rank}.json")],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    r0, r1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in range(2))
    assert r0["sha"] == r1["sha"]
    assert r0["summary"]["steps"] == 6
    # both ranks consumed distinct halves of each global batch: 6 steps × 2 ranks × 2 rows × 128 tokens
    assert r0["summary"]["tokens"] == 6 * 2 * 2 * 128


def test_sigterm_checkpoints_after_the_current_step_and_resume_finishes(mix, tmp_path):
    import signal
    calls = []

    def preempted(model, batch, device):  # the scheduler sends SIGTERM during the 3rd step
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return lm_loss_sum(model, batch, device)

    common = ("data.stages=[1]", "max_steps=5", "checkpoint.resume=true")
    s1, _ = train(config(mix, tmp_path, *common), loss_fn=preempted)
    assert s1["stopped"] and s1["steps"] == 3
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "global_step3"
    s2, _ = train(config(mix, tmp_path, *common))
    assert s2["steps"] == 5 and not s2["stopped"]
    assert [r["step"] for r in records(tmp_path)] == [1, 2, 3, 4, 5]


def test_zero3_trains_and_exports_a_model_transformers_loads(mix, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = config(mix, tmp_path, f"deepspeed={ROOT}/conf/deepspeed/zero3.json", "data.stages=[1]", "max_steps=3")
    summary, _ = train(cfg)
    assert summary["steps"] == 3 and summary["skipped"] == 0
    hf_dir = export_checkpoint(tmp_path / "ckpt", tmp_path / "hf", dtype=torch.float32)
    ours_cfg, sd = load_hf(hf_dir)
    from trainer.model import Llama
    ours = Llama(ours_cfg, attention="sdpa_mask").eval()
    ours.load_state_dict(sd)
    ref = transformers.LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager").eval()
    ids = torch.tensor([[1, 50, 60, 70, 80, 2]])
    with torch.no_grad():
        assert (ref(input_ids=ids).logits - ours(ids)).abs().max().item() <= 1e-4
    # the export carries the mix's tokenizer (named in the checkpoint): the pair generates end to end
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert (hf_dir / "tokenizer.model").read_bytes() == (mix / "tokenizer.model").read_bytes()
    enc = tok("The system initialization", return_tensors="pt")
    gen = ref.generate(**enc, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == enc.input_ids.shape[1] + 4
