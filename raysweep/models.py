"""Model families and named sizes: a transformers config with random init, never downloaded weights.

A sweep names models (``gpt2-small``, ``pythia-1b``, ``gpt2-micro``); this module turns a name into a
``transformers`` causal-LM config for the sweep's vocabulary and context length::

    spec = resolve_model("pythia-70m", sweep.models)
    model = build_model(spec, vocab_size=257, seq_len=64, eos_id=256)     # random init, SDPA attention

The paper's sizes keep the published shapes (GPT-2 small/large, Pythia-70M/1B, OPT-125M) but take the
sweep's tokenizer: with the byte tokenizer their embedding tables are much smaller than the originals.
The ``-nano``/``-micro``/``-mini`` sizes are for CPUs and tests.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, OPTConfig

from raysweep.config import MODEL_SIZES, ModelSpec


def resolve_model(name: str, custom: dict[str, ModelSpec]) -> ModelSpec:
    """A sweep's own `models:` entries take precedence over the built-in sizes."""
    return custom.get(name) or MODEL_SIZES[name]


def model_config(spec: ModelSpec, vocab_size: int, seq_len: int, eos_id: int):
    """The transformers config of `spec`; dropout is off, as in modern pretraining."""
    d_ff = spec.d_ff or 4 * spec.d_model
    special = {"bos_token_id": eos_id, "eos_token_id": eos_id}
    if spec.family == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_positions=seq_len, n_embd=spec.d_model, n_layer=spec.n_layer,
                          n_head=spec.n_head, n_inner=d_ff, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **special)
    if spec.family == "pythia":
        # Pythia: GPT-NeoX with parallel residuals and rotary embeddings on a quarter of each head.
        return GPTNeoXConfig(vocab_size=vocab_size, max_position_embeddings=seq_len, hidden_size=spec.d_model,
                             num_hidden_layers=spec.n_layer, num_attention_heads=spec.n_head, intermediate_size=d_ff,
                             rotary_pct=0.25, use_parallel_residual=True, hidden_dropout=0.0, attention_dropout=0.0,
                             tie_word_embeddings=False, **special)
    return OPTConfig(vocab_size=vocab_size, max_position_embeddings=seq_len, hidden_size=spec.d_model,
                     num_hidden_layers=spec.n_layer, num_attention_heads=spec.n_head, ffn_dim=d_ff,
                     word_embed_proj_dim=spec.d_model, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                     **special)


def build_model(spec: ModelSpec, vocab_size: int, seq_len: int, eos_id: int) -> torch.nn.Module:
    config = model_config(spec, vocab_size, seq_len, eos_id)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def count_parameters(spec: ModelSpec, vocab_size: int, seq_len: int, eos_id: int) -> int:
    """Parameters of the model (tied weights once), counted on the meta device: no memory, no init."""
    with torch.device("meta"):
        model = build_model(spec, vocab_size, seq_len, eos_id)
    return sum(p.numel() for p in model.parameters())
