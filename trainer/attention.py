"""Document-masked causal attention over packed rows: one entry point, several backends.

A packed row holds several documents; a token may attend only to earlier tokens of its own document.
The documents are given as flattened `cu_seqlens` (int32 offsets into the B·S tokens, as in FlashAttention).

Backends:
- `varlen`     torch.nn.attention.varlen.varlen_attn (CUDA only; torch >= 2.9)
- `flash_attn` flash_attn.flash_attn_varlen_func (CUDA; only if the package imports, never required)
- `sdpa_mask`  scaled_dot_product_attention with a block-diagonal causal boolean mask (CPU, any device)
- `auto`       varlen on CUDA if available, else flash_attn on CUDA, else sdpa_mask

`prepare()` runs once per forward (the mask or the cu_seqlens casts are shared by every layer), and
`attend()` runs in each layer. The kernel and its keyword arguments are resolved once per process
(`kernel()`, cached): no layer call inspects a signature.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "varlen", "flash_attn", "sdpa_mask")


def _varlen_fn():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def _flash_fn():
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # ImportError, or a wheel built against another torch
        return None
    return flash_attn_varlen_func


def _varlen_causal_kwargs(fn) -> dict:
    """torch 2.9 spells causal `is_causal=True`; 2.10+ uses a sliding window `window_size=(-1, 0)`."""
    params = inspect.signature(fn).parameters
    if "window_size" in params:
        return {"window_size": (-1, 0)}
    if "is_causal" in params:
        return {"is_causal": True}
    raise RuntimeError(f"unrecognised varlen_attn signature: {inspect.signature(fn)}")


@dataclass(frozen=True)
class Kernel:
    """A varlen kernel and the keyword arguments that make it causal (and handle GQA), fixed at setup."""
    fn: object
    kwargs: dict = field(default_factory=dict)
    gqa_kwargs: dict | None = None   # extra kwargs when k/v have fewer heads; None = repeat k/v heads


def varlen_kernel(fn) -> Kernel:
    """torch.nn.attention.varlen_attn: causal via `window_size=(-1, 0)` (2.10+) or `is_causal=True` (2.9);
    GQA natively when it takes `enable_gqa`, else k/v heads are repeated."""
    gqa = {"enable_gqa": True} if "enable_gqa" in inspect.signature(fn).parameters else None
    return Kernel(fn, _varlen_causal_kwargs(fn), gqa)


@functools.lru_cache(maxsize=None)
def kernel(backend: str) -> Kernel | None:
    """The kernel of a resolved CUDA backend, once per process; None for sdpa_mask."""
    if backend == "varlen":
        return varlen_kernel(_varlen_fn())
    if backend == "flash_attn":
        return Kernel(_flash_fn(), {"causal": True}, gqa_kwargs={})  # flash_attn handles GQA natively
    return None


def resolve_backend(name: str, device: torch.device) -> str:
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} not in {BACKENDS}")
    on_cuda = device.type == "cuda"
    if name == "auto":
        if on_cuda and _varlen_fn() is not None:
            return "varlen"
        if on_cuda and _flash_fn() is not None:
            return "flash_attn"
        return "sdpa_mask"
    if name in ("varlen", "flash_attn") and not on_cuda:
        raise RuntimeError(f"attention backend {name} needs CUDA; use sdpa_mask on {device.type}")
    if name == "varlen" and _varlen_fn() is None:
        raise RuntimeError("torch.nn.attention.varlen is not available in this torch")
    if name == "flash_attn" and _flash_fn() is None:
        raise RuntimeError("flash_attn does not import")
    return name


@dataclass
class AttnMeta:
    """What every layer needs to attend within documents, computed once per forward."""
    backend: str
    batch: int
    seq_len: int
    cu_seqlens: torch.Tensor | None = None   # int32 [n_docs + 1], varlen / flash_attn
    max_seqlen: int = 0
    mask: torch.Tensor | None = None         # bool [B, 1, S, S], sdpa_mask; None = plain causal
    kernel: Kernel | None = None             # varlen / flash_attn: the function and its causal kwargs


def doc_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, batch: int, seq_len: int) -> torch.Tensor:
    """Document index of every token, [B, S]: the number of document starts at or before it."""
    pos = torch.arange(batch * seq_len, device=cu_seqlens.device)
    ids = torch.searchsorted(cu_seqlens[1:].to(pos.dtype).contiguous(), pos, right=True)
    return ids.view(batch, seq_len)


def prepare(backend: str, batch: int, seq_len: int, device: torch.device,
            cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None) -> AttnMeta:
    backend = resolve_backend(backend, device)
    if cu_seqlens is None:  # one document per row
        cu_seqlens = torch.arange(0, (batch + 1) * seq_len, seq_len, dtype=torch.int32, device=device)
        max_seqlen = seq_len
    cu_seqlens = cu_seqlens.to(device=device, dtype=torch.int32)
    if backend == "sdpa_mask":
        doc = doc_ids_from_cu_seqlens(cu_seqlens, batch, seq_len)
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
        mask = (doc[:, :, None] == doc[:, None, :]) & causal
        return AttnMeta(backend, batch, seq_len, mask=mask[:, None])
    if max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return AttnMeta(backend, batch, seq_len, cu_seqlens=cu_seqlens, max_seqlen=int(max_seqlen),
                    kernel=kernel(backend))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttnMeta) -> torch.Tensor:
    """q [B, S, H, D], k/v [B, S, Hkv, D] -> [B, S, H, D]; Hkv may divide H (GQA)."""
    B, S, H, D = q.shape
    n_rep = H // k.shape[2]
    if meta.backend == "sdpa_mask":
        if n_rep > 1:
            k = k.repeat_interleave(n_rep, dim=2)
            v = v.repeat_interleave(n_rep, dim=2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=meta.mask)
        return out.transpose(1, 2)
    if meta.kernel is None:
        raise ValueError(f"backend {meta.backend} has no kernel")
    qf, kf, vf = (t.reshape(B * S, t.shape[2], D) for t in (q, k, v))
    kw = meta.kernel.kwargs
    if n_rep > 1:
        if meta.kernel.gqa_kwargs is not None:
            kw = {**kw, **meta.kernel.gqa_kwargs}
        else:
            kf, vf = kf.repeat_interleave(n_rep, dim=1), vf.repeat_interleave(n_rep, dim=1)
    out = meta.kernel.fn(qf, kf, vf, meta.cu_seqlens, meta.cu_seqlens, meta.max_seqlen, meta.max_seqlen, **kw)
    return out.view(B, S, H, D)
