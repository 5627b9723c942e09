"""CUDA-only checks of the trainer (each skips cleanly without CUDA; run them when a GPU is lent):
varlen forward and backward against sdpa_mask on a packed bf16 batch, the chunked loss in bf16 on the GPU,
`auto` picking a real kernel, and bench-gpu refusing a missing backend instead of falling back."""
import json
from pathlib import Path

import pytest
import torch

from trainer.attention import attend, prepare, resolve_backend
from trainer.config import ModelConfig
from trainer.model import IGNORE, Llama, causal_lm_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only (varlen_attn has no CPU kernel)")
ROOT = Path(__file__).resolve().parent.parent


def packed(S: int = 4096):
    """Two rows with the document lengths of real packed fixture rows (bench/gpu_doc_lens.json)."""
    rows = json.loads((ROOT / "bench/gpu_doc_lens.json").read_text())["rows"]
    lens = [n for r in rows[:2] for n in r]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    return cu, max(lens)


def test_auto_picks_a_cuda_kernel():
    assert resolve_backend("auto", torch.device("cuda")) in ("varlen", "flash_attn")


def test_varlen_forward_and_backward_match_sdpa_mask_in_bf16():
    cu, mx = packed()
    B, S, H, Hkv, D = 2, 4096, 32, 4, 64
    g = torch.Generator(device="cuda").manual_seed(0)
    base = [torch.randn(B, S, h, D, device="cuda", generator=g) for h in (H, Hkv, Hkv)]
    dout = torch.randn(B, S, H, D, device="cuda", generator=g)

    def run(backend, dtype):
        q, k, v = (t.detach().to(dtype).clone().requires_grad_(True) for t in base)
        out = attend(q, k, v, prepare(backend, B, S, q.device, cu, mx))
        out.backward(dout.to(dtype))
        return [t.float() for t in (out, q.grad, k.grad, v.grad)]

    ref, pt, got = run("sdpa_mask", torch.float32), run("sdpa_mask", torch.bfloat16), run("varlen", torch.bfloat16)
    for a, p, r in zip(got, pt, ref):  # FlashAttention's criterion: at most 2x the bf16 PyTorch error
        assert (a - r).abs().max().item() <= 2 * (p - r).abs().max().item() + 1e-5


def test_chunked_loss_in_bf16_on_cuda_equals_the_plain_loss():
    cfg = ModelConfig(vocab_size=39424, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=704, max_seq_len=4096)
    torch.manual_seed(0)
    m = Llama(cfg, "varlen", loss_chunk=1024).cuda().to(torch.bfloat16)
    cu, mx = packed()
    ids = torch.randint(3, cfg.vocab_size, (2, 4096), device="cuda")
    labels = torch.cat([ids[:, 1:], torch.full((2, 1), IGNORE, device="cuda")], 1)
    n = int((labels != IGNORE).sum())
    with torch.no_grad():
        plain = causal_lm_loss(m(ids, None, cu, mx), labels) * n
        chunked = m(ids, None, cu, mx, labels=labels)
    assert torch.allclose(chunked, plain.float(), rtol=1e-2)


def test_bench_gpu_refuses_a_missing_backend():
    from bench.gpu import require_backend
    try:
        import flash_attn  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError):
            require_backend("flash_attn")
    assert require_backend("varlen") == "varlen"
