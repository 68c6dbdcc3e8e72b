"""A tiny random DiffusionGemma checkpoint built inside the tests (no network), saved like a
real one: ``config.json`` + weights (``save_pretrained``), the char-level tokenizer of
``tiny_models`` and a ``generation_config.json`` with few denoising steps.

- ``tiny_diffusion_gemma_config(**overrides)``: the DiffusionGemmaConfig (2 layers, a 4-expert
  MoE, a one-layer vision tower the config requires, a 16-token canvas, vocabulary 128).
- ``build_tiny_diffusion_gemma(dir, seed=0, **generation)``: builds and saves it to ``dir``;
  ``generation`` overrides the decoding fields of ``generation_config.json`` (names as in
  ``DiffusionGemmaSettings``: ``entropy_bound`` for the sampler's bound).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tiny_models import BOS_ID, EOS_ID, PAD_ID, build_tokenizer

CANVAS = 16
VOCAB = 128
EOT_ID = 6  # "<|eot_id|>" in build_tokenizer()'s vocabulary: ends a chat turn, so it is an EOS too
# Decoding fields of the saved generation_config.json: few steps, three canvases, and a
# confidence threshold that a random model's rows meet at different steps as the temperature
# falls (stability_threshold=0: its argmax never settles, so a stability rule would never stop).
GENERATION = dict(max_new_tokens=3 * CANVAS, max_denoising_steps=8, t_min=0.1, t_max=0.8,
                  entropy_bound=0.5,
                  stability_threshold=0, confidence_threshold=1.5)


def tiny_diffusion_gemma_config(**overrides):
    from transformers import DiffusionGemmaConfig

    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
                sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                num_experts=4, top_k_experts=2, moe_intermediate_size=16, max_position_embeddings=512,
                pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID,
                # wider than Gemma's 0.02 so a random model has peaked, varied predictions
                initializer_range=0.3)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=8, position_embedding_size=64, patch_size=4)
    # the image ids must lie in the vocabulary; the tokenizer never produces them
    kw = dict(text_config=text, vision_config=vision, canvas_length=CANVAS, initializer_range=0.3,
              boi_token_id=VOCAB - 3, eoi_token_id=VOCAB - 2, image_token_id=VOCAB - 1)
    kw.update(overrides)
    return DiffusionGemmaConfig(**kw)


def build_tiny_diffusion_gemma(out_dir, seed: int = 0, **generation) -> Path:
    from transformers import DiffusionGemmaForBlockDiffusion, DiffusionGemmaGenerationConfig, EntropyBoundSamplerConfig

    out = Path(out_dir)
    torch.manual_seed(seed)
    model = DiffusionGemmaForBlockDiffusion(tiny_diffusion_gemma_config()).eval()
    fields = {**GENERATION, **generation}
    sampler = EntropyBoundSamplerConfig(entropy_bound=fields.pop("entropy_bound"))
    model.generation_config = DiffusionGemmaGenerationConfig(
        **fields, sampler_config=sampler, pad_token_id=PAD_ID, eos_token_id=[EOS_ID, EOT_ID], bos_token_id=BOS_ID)
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    return out
