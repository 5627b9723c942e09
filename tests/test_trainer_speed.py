"""The speed work, checked on CPU: the fused chunked loss equals the plain one and never holds the whole logits,
accumulating k micro-batches equals one batch of the same tokens (token-weighted loss and gradients), the
torch.compile option gives the same loss, the FLOP count covers the document-masked area, the varlen kernel's
keyword arguments are fixed at setup, and bench.gpu refuses to run without CUDA."""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from trainer.attention import _varlen_fn, prepare, varlen_kernel
from trainer.config import ModelConfig, load_config
from trainer.data import StageLoader, collate, read_mix
from dataflow.trainset.demo import build
from trainer.metrics import attention_pairs, step_flops
from trainer.model import IGNORE, Llama, causal_lm_loss, num_params
from trainer.step import label_tokens
from trainer.train import train

ROOT = Path(__file__).resolve().parent.parent
SEQ = 128
CFG = ModelConfig(vocab_size=4096, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, max_seq_len=SEQ)


@pytest.fixture(scope="module")
def mix(corpus_dir, tmp_path_factory):
    return build(corpus_dir / "docs.jsonl", tmp_path_factory.mktemp("mix"), seq_len=SEQ, vocab_size=4000,
                 rows_per_stage=16, rows_per_shard=8)


def real_batch(mix, stage_index: int, n: int) -> dict:
    stage = read_mix(mix)[stage_index]
    rows = [r for p, _ in stage.shards for r in pq.read_table(p).to_pylist()][:n]
    return collate(rows, stage.seq_len)


def forward(model, b, **kw):
    return model(b["input_ids"], b["position_ids"], b["cu_seqlens"], b["max_seqlen"], **kw)


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_chunked_loss_equals_the_plain_loss_and_gradients(mix, dtype, rtol):
    b = real_batch(mix, 1, 3)  # Q&A rows: prompts and document ends carry no label
    torch.manual_seed(0)
    plain = Llama(CFG, "sdpa_mask").to(dtype)
    chunked = Llama(CFG, "sdpa_mask", loss_chunk=37).to(dtype)  # 37 does not divide 3 × 128: a ragged last chunk
    chunked.load_state_dict(plain.state_dict())
    n = int((b["labels"] != IGNORE).sum())
    ref = causal_lm_loss(forward(plain, b), b["labels"]) * n    # mean × count = the sum the trainer uses
    got = forward(chunked, b, labels=b["labels"])
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref.float(), rtol=rtol), (got, ref)
    ref.backward()
    got.backward()
    for name in ("lm_head.weight", "model.norm.weight", "model.layers.1.mlp.down_proj.weight",
                 "model.embed_tokens.weight"):
        a, c = dict(plain.named_parameters())[name].grad.float(), dict(chunked.named_parameters())[name].grad.float()
        scale = a.abs().max().item()
        assert (a - c).abs().max().item() <= rtol * 10 * scale, name


def test_chunked_loss_never_holds_the_whole_logits(mix):
    """LLaMA-2's 32,000 pieces + Ziya2's 7,400 characters, padded: no tensor kept for backward (and none
    returned) has tokens × vocab elements, while the plain loss keeps exactly such a tensor."""
    vocab = 39424
    cfg = ModelConfig(vocab_size=vocab, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=176, max_seq_len=SEQ)
    b = real_batch(mix, 0, 4)
    tokens = b["input_ids"].numel()

    def largest_saved(model, **kw):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            out = forward(model, b, **kw)
            if not kw:
                out = causal_lm_loss(out, b["labels"])
        out.backward()
        return max(sizes)

    torch.manual_seed(1)
    assert largest_saved(Llama(cfg, "sdpa_mask")) >= tokens * vocab
    assert largest_saved(Llama(cfg, "sdpa_mask", loss_chunk=128), labels=b["labels"]) < tokens * vocab // 4


def test_accumulating_micro_batches_equals_one_batch_of_the_same_tokens(mix, tmp_path):
    """4 micro-batches of 1 row vs 1 micro-batch of 4 rows, same rows (stage 2: Q&A rows with few label tokens
    next to prose rows): the same token-mean loss and the same gradient (its global norm, before clipping)."""
    stage = read_mix(mix)[1]
    rows = StageLoader(stage, 1234, 4).batch(0)
    counts = [label_tokens({"labels": rows["labels"][i:i + 1]}) for i in range(4)]
    assert len(set(counts)) > 1, counts  # otherwise a mean of means would agree by accident
    common = [f"data.root={mix}", "metrics.progress_bar=false", "metrics.tensorboard=false", "metrics.plot=false",
              "model.dim=64", "model.ffn_dim=176", "precision=fp32", f"deepspeed={ROOT}/conf/deepspeed/zero1.json",
              "data.stages=[2]", "max_steps=1", "checkpoint.at_exit=false", "checkpoint.resume=false",
              "data.steps_per_stage=0", "data.seed=1234"]
    out = {}
    for mb, ga in ((4, 1), (1, 4)):
        d = tmp_path / f"mb{mb}"
        cfg = load_config(ROOT / "conf/train/tiny.yaml", common + [f"micro_batch_size={mb}", f"grad_accum={ga}",
                                                                   f"metrics.dir={d}", f"checkpoint.dir={d / 'ck'}"])
        train(cfg)
        out[mb] = json.loads(open(d / "metrics.jsonl").readline())
    a, b = out[4], out[1]
    assert a["label_tokens"] == b["label_tokens"] == sum(counts)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)


def test_compile_option_gives_the_same_loss(mix):
    b = real_batch(mix, 1, 2)
    torch.manual_seed(2)
    eager = Llama(CFG, "sdpa_mask", loss_chunk=64)
    compiled = Llama(CFG, "sdpa_mask", loss_chunk=64)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks()
    assert list(dict(compiled.named_parameters())) == list(dict(eager.named_parameters()))  # HF names kept
    le, lc = forward(eager, b, labels=b["labels"]), forward(compiled, b, labels=b["labels"])
    assert torch.allclose(le, lc, rtol=1e-5), (le, lc)
    le.backward()
    lc.backward()
    ge = eager.model.layers[0].self_attn.q_proj.weight.grad
    gc = compiled.model.layers[0].self_attn.q_proj.weight.grad
    assert torch.allclose(ge, gc, rtol=1e-4, atol=1e-6)


def test_attention_flops_count_the_document_masked_area():
    cu = torch.tensor([0, 3, 10, 16, 20, 32], dtype=torch.int32)  # row 0: 3, 7, 6; row 1: 4, 12
    mask = prepare("sdpa_mask", 2, 16, torch.device("cpu"), cu).mask
    assert attention_pairs([3, 7, 6, 4, 12]) == int(mask.sum())   # the pairs the mask lets through
    assert attention_pairs([4096]) == 4096 * 4097 // 2
    # the 1.1B model of bench-gpu: N counted from its shapes by hand, then the step formula written out
    from trainer.config import load_model_config
    m = load_model_config(ROOT / "conf/model/1b.yaml")
    kv = m.kv_heads * m.head_dim
    per_layer = 2 * m.dim * m.dim + 2 * m.dim * kv + 3 * m.dim * m.hidden_dim + 2 * m.dim
    n = m.n_layers * per_layer + m.dim + m.vocab_size * m.dim   # final norm and lm_head; no embedding
    with torch.device("meta"):
        assert num_params(Llama(m), exclude_embeddings=True) == n
    lens = [1000, 96, 3000]
    pairs = 1000 * 1001 // 2 + 96 * 97 // 2 + 3000 * 3001 // 2
    assert step_flops(m, n, 4096, attention_pairs(lens)) == 6 * n * 4096 + 12 * m.n_layers * m.dim * pairs
    # the masked area is well under the full 4096² that PaLM's 12·L·d·S per token assumes
    assert attention_pairs(lens) < 0.3 * 4096 * 4096


def test_varlen_kernel_arguments_are_resolved_once_at_setup():
    fn = _varlen_fn()
    if fn is None:
        pytest.fail("torch.nn.attention.varlen is missing from this torch")
    k = varlen_kernel(fn)
    assert k.fn is fn and k.kwargs == {"window_size": (-1, 0)} and k.gqa_kwargs == {"enable_gqa": True}
    assert prepare("sdpa_mask", 1, 8, torch.device("cpu")).kernel is None


def test_bench_gpu_exits_with_a_clear_message_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: bench-gpu would run for real")
    out = tmp_path / "gpu.md"
    p = subprocess.run([sys.executable, "-m", "bench.gpu", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2
    assert "needs a CUDA GPU" in p.stderr and not out.exists()


def test_bench_gpu_flow_runs_end_to_end_on_cpu(tmp_path):
    """--cpu-smoke: the whole bench-gpu flow (numerics table, engine per configuration, FLOP count, Markdown) with
    a 1-layer model and sdpa_mask, so a lent GPU's minutes are not spent on a bug in the script."""
    out = tmp_path / "gpu.md"
    # a fresh process group: drop the rendezvous variables an earlier in-process train() left in os.environ
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run([sys.executable, "-m", "bench.gpu", "--cpu-smoke", "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    md = out.read_text()
    assert "Result: pass" in md and "| sdpa_mask | dv |" in md
    assert "| off | 1 |" in md and "| on | 1 |" in md
    rows = json.loads((ROOT / "bench/gpu_doc_lens.json").read_text())["rows"]
    pairs = statistics.mean(attention_pairs(r) for r in rows)
    assert f"A = {pairs:,.0f} pairs per row" in md
