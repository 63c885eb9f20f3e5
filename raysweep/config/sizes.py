"""The named model sizes a sweep may use (``proxy.models``, ``target.model``): the paper's, and small ones for CPUs and
tests. A sweep's own ``models:`` entries add to them (``raysweep.models.resolve_model``)."""

from __future__ import annotations

from raysweep.config.schema import ModelSpec

MODEL_SIZES: dict[str, ModelSpec] = {
    # the paper's proxies and targets
    "gpt2-small": ModelSpec("gpt2", n_layer=12, d_model=768, n_head=12),
    "gpt2-medium": ModelSpec("gpt2", n_layer=24, d_model=1024, n_head=16),
    "gpt2-large": ModelSpec("gpt2", n_layer=36, d_model=1280, n_head=20),
    "pythia-70m": ModelSpec("pythia", n_layer=6, d_model=512, n_head=8),
    "pythia-160m": ModelSpec("pythia", n_layer=12, d_model=768, n_head=12),
    "pythia-1b": ModelSpec("pythia", n_layer=16, d_model=2048, n_head=8),
    "opt-125m": ModelSpec("opt", n_layer=12, d_model=768, n_head=12),
    # CPU sizes
    "gpt2-nano": ModelSpec("gpt2", n_layer=2, d_model=32, n_head=2),
    "gpt2-micro": ModelSpec("gpt2", n_layer=2, d_model=64, n_head=4),
    "gpt2-mini": ModelSpec("gpt2", n_layer=4, d_model=128, n_head=4),
    "pythia-nano": ModelSpec("pythia", n_layer=2, d_model=32, n_head=2),
    "pythia-micro": ModelSpec("pythia", n_layer=2, d_model=64, n_head=4),
    "opt-nano": ModelSpec("opt", n_layer=2, d_model=32, n_head=2),
    "opt-micro": ModelSpec("opt", n_layer=2, d_model=64, n_head=4),
}
