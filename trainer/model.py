"""LLaMA in plain PyTorch: pre-norm RMSNorm, SwiGLU, RoPE indexed by position_ids, optional GQA, untied lm_head.

Parameter names equal HF `LlamaForCausalLM`'s (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight,
..., model.norm.weight, lm_head.weight), so HF import/export is a plain state-dict copy (trainer/hf.py).
The model knows nothing of DeepSpeed or of the data loader; packed documents reach it only as
`position_ids` (reset at each document) and `cu_seqlens` (for the attention mask).

Given `labels`, the forward returns the summed token cross-entropy instead of logits, computed by
`chunked_lm_loss` a chunk of tokens at a time, so the [tokens × vocab] logits (4 rows × 4096 × 39,424 fp32 =
2.6 GB for LLaMA-2's 32,000 pieces plus Ziya2's 7,400 characters) never exist whole. The caller divides the
sum by the number of label tokens of the whole global batch (trainer/step.py), so every token weighs the same
across documents, micro-batches and ranks.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .attention import AttnMeta, attend, prepare
from .config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # normalise in fp32 as HF does, then cast back before the weight
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos/sin [B, S, head_dim] for HF's rotate-half layout, computed in fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32,
                                             device=position_ids.device) / head_dim))
    freqs = position_ids[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, H, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, :, None] + rotated * sin[:, :, None]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, self.n_heads * self.hd, bias=False)
        self.k_proj = nn.Linear(cfg.dim, self.n_kv * self.hd, bias=False)
        self.v_proj = nn.Linear(cfg.dim, self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.hd, cfg.dim, bias=False)

    def forward(self, x, cos, sin, meta: AttnMeta):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.n_heads, self.hd)
        k = self.k_proj(x).view(B, S, self.n_kv, self.hd)
        v = self.v_proj(x).view(B, S, self.n_kv, self.hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.o_proj(attend(q, k, v, meta).reshape(B, S, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, meta: AttnMeta):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    """HF's `model.` prefix: embeddings, blocks, final norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)


IGNORE = -100  # label of a position that is not trained on (document ends, prompts, padding)


class _ChunkedLinearCE(torch.autograd.Function):
    """sum over labelled tokens of CE(hidden @ weight.T, labels), one chunk of tokens at a time.

    The gradients are computed in the forward pass, chunk by chunk, while each chunk's logits exist (as
    Liger-Kernel's fused linear cross-entropy does): no chunk is recomputed and no full logits are kept.
    Backward only scales the stored gradients by the incoming gradient of the (scalar) sum."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk):
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.zeros_like(hidden) if want_grad else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_grad else None
        for lo in range(0, hidden.shape[0], chunk):
            h, y = hidden[lo:lo + chunk], labels[lo:lo + chunk]
            valid = y != IGNORE
            target = torch.where(valid, y, torch.zeros_like(y))
            logits = (h @ weight.t()).float()          # the model dtype's matmul, fp32 softmax (as F.linear + CE)
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, target[:, None])[:, 0]
            total += torch.where(valid, lse - picked, torch.zeros_like(lse)).sum()
            if want_grad:
                g = logits.sub_(lse[:, None]).exp_()   # softmax, in place of the logits
                g[torch.arange(len(y), device=g.device), target] -= 1.0
                g.mul_(valid[:, None])
                g = g.to(hidden.dtype)
                grad_h[lo:lo + chunk] = g @ weight
                grad_w += (g.t() @ h).float()
        if want_grad:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out.to(grad_h.dtype), grad_w * grad_out.to(grad_w.dtype), None, None


def chunked_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` over labels != -100 (labels already shifted), in fp32."""
    h = hidden.reshape(-1, hidden.shape[-1])
    y = labels.reshape(-1).to(h.device)
    if chunk <= 0:
        return F.cross_entropy((h @ weight.t()).float(), y, ignore_index=IGNORE, reduction="sum")
    return _ChunkedLinearCE.apply(h, weight, y, int(chunk))


class LMHead(nn.Linear):
    """lm_head: logits, or with labels the chunked loss. The loss runs inside this module's own forward so that
    ZeRO-3 has gathered the (partitioned) weight; the parameter name stays `lm_head.weight`."""

    def forward(self, x, labels=None, chunk: int = 0):
        if labels is None:
            return super().forward(x)
        return chunked_lm_loss(x, self.weight, labels, chunk)


@torch.no_grad()
def init_module(m: nn.Module, std: float) -> None:
    """The initial values of one module's own parameters (HF LlamaPreTrainedModel._init_weights: normal(0,
    initializer_range) for linears and embeddings, ones for norms). A caller that builds the model partitioned
    applies it module by module, in `modules()` order, to get the same values."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        m.weight.normal_(0.0, std)
    elif isinstance(m, RMSNorm):
        m.weight.fill_(1.0)


class Llama(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str = "auto", loss_chunk: int = 0):
        super().__init__()
        self.cfg, self.attention, self.loss_chunk = cfg, attention, loss_chunk
        self.model = LlamaBody(cfg)
        self.lm_head = LMHead(cfg.dim, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        for m in self.modules():
            init_module(m, self.cfg.init_std)

    def compile_blocks(self, **kwargs) -> None:
        """torch.compile each block in place (as torchtitan does): parameter names are unchanged, and the
        attention backend, the loss and the checkpointing policy stay outside the compiled graphs."""
        for layer in self.model.layers:
            layer.compile(**kwargs)

    def forward(self, input_ids, position_ids=None, cu_seqlens=None, max_seqlen=None, labels=None):
        """Logits [B, S, vocab]; with `labels` [B, S] (already shifted), the summed fp32 loss instead."""
        B, S = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(S, device=input_ids.device).expand(B, S)
        x = self.model.embed_tokens(input_ids)
        meta = prepare(self.attention, B, S, x.device, cu_seqlens, max_seqlen)
        cos, sin = rope_cos_sin(position_ids, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        for layer in self.model.layers:
            if self.cfg.activation_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, meta, use_reentrant=False)
            else:
                x = layer(x, cos, sin, meta)
        return self.lm_head(self.model.norm(x), labels, self.loss_chunk)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not -100 (labels are already shifted)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)


def num_params(model: nn.Module, exclude_embeddings: bool = False) -> int:
    n = sum(p.numel() for p in model.parameters())
    if exclude_embeddings:
        n -= model.model.embed_tokens.weight.numel()
    return n
