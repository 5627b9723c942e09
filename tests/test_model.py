"""The pure-PyTorch LLaMA: HF-equal logits, document masking of packed rows, checkpointed blocks."""
import pytest
import torch

from trainer.attention import prepare, resolve_backend
from trainer.config import ModelConfig
from trainer.model import Llama, causal_lm_loss

CFG = ModelConfig(vocab_size=320, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, max_seq_len=256)


def hf_model(cfg: ModelConfig):
    transformers = pytest.importorskip("transformers")
    hc = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads,
        rms_norm_eps=cfg.norm_eps, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=False, attention_bias=False)
    hc._attn_implementation = "eager"
    return transformers.LlamaForCausalLM(hc).eval()


def test_logits_equal_transformers_on_same_random_weights():
    torch.manual_seed(0)
    ours = Llama(CFG, attention="sdpa_mask").eval()
    ref = hf_model(CFG)
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all("rotary" in m for m in missing)
    ids = torch.randint(0, CFG.vocab_size, (2, 48))
    with torch.no_grad():
        a = ours(ids)
        b = ref(input_ids=ids).logits
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= 1e-4


def test_packed_forward_equals_each_document_alone():
    torch.manual_seed(1)
    model = Llama(CFG, attention="sdpa_mask").eval()
    lens = [[7, 20, 5], [32]]
    S = 32
    ids = torch.randint(0, CFG.vocab_size, (2, S))
    pos = torch.cat([torch.cat([torch.arange(n) for n in row])[None] for row in lens])
    cu = torch.tensor([0, 7, 27, 32, 64], dtype=torch.int32)
    with torch.no_grad():
        packed = model(ids, pos, cu, 20)
        for b, row in enumerate(lens):
            start = 0
            for n in row:
                alone = model(ids[b:b + 1, start:start + n])
                assert (packed[b, start:start + n] - alone[0]).abs().max().item() <= 1e-5
                start += n
    # and without the document mask a later document does see the earlier one
    with torch.no_grad():
        unmasked = model(ids, pos)
    assert (unmasked[0, 7:27] - packed[0, 7:27]).abs().max().item() > 1e-3


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(2)
    ids = torch.randint(0, CFG.vocab_size, (2, 24))
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(3)
        cfg = ModelConfig(**{**CFG.__dict__, "activation_checkpointing": ckpt})
        m = Llama(cfg, attention="sdpa_mask").train()
        causal_lm_loss(m(ids[:, :-1]), ids[:, 1:]).backward()
        grads.append(m.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_sdpa_mask_is_block_diagonal_causal():
    cu = torch.tensor([0, 2, 5, 8, 12], dtype=torch.int32)
    meta = prepare("sdpa_mask", 2, 6, torch.device("cpu"), cu)
    m = meta.mask[:, 0]
    # row 0 holds documents [0,2) and [2,5) and the first token of [5,8); row 1 holds [8,12) after two tokens of [5,8)
    assert m[0, 3].tolist() == [False, False, True, True, False, False]
    assert m[0, 5].tolist() == [False] * 5 + [True]
    assert m[1, 1].tolist() == [True, True, False, False, False, False]
    assert m[1, 3].tolist() == [False, False, True, True, False, False]


def test_cuda_backends_refuse_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa_mask"
    with pytest.raises(RuntimeError):
        resolve_backend("varlen", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="varlen_attn has no CPU kernel")
def test_varlen_matches_sdpa_mask_on_cuda():
    torch.manual_seed(4)
    m = Llama(CFG, attention="sdpa_mask").cuda().to(torch.bfloat16).eval()
    ids = torch.randint(0, CFG.vocab_size, (2, 32), device="cuda")
    pos = torch.cat([torch.arange(10), torch.arange(22), torch.arange(32)]).view(2, 32).cuda()
    cu = torch.tensor([0, 10, 32, 64], dtype=torch.int32, device="cuda")
    with torch.no_grad():
        a = m(ids, pos, cu, 32)
        m.attention = "varlen"
        b = m(ids, pos, cu, 32)
    assert (a.float() - b.float()).abs().max().item() < 5e-2
