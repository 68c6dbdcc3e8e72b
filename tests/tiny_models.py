"""Tiny models and tokenizers built inside the tests (no network), saved like real checkpoints.

- ``build_tokenizer()``: a char-level ``PreTrainedTokenizerFast`` (printable ASCII + newline)
  with mask / EOS / pad / BOS tokens and a minimal chat template.
- ``build_tiny_llada(dir, seed=0)``: a randomly initialised tiny LLaDA + that tokenizer,
  saved to ``dir``; load it with ``AutoModel.from_pretrained`` or ``load_model``.
- ``build_tiny_bert(dir, seed=0)``: the same for a tiny ``BertForMaskedLM`` (any masked
  predictor returning ``.logits`` must work through the loader and the sampler).
"""

from __future__ import annotations

from pathlib import Path

import torch

MASK, EOS, PAD, BOS = "<|mdm_mask|>", "<|endoftext|>", "<|pad|>", "<|startoftext|>"
SPECIALS = [MASK, EOS, PAD, BOS, "<|user|>", "<|assistant|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Ids of the special tokens in build_tokenizer()'s vocabulary.
MASK_ID, EOS_ID, PAD_ID, BOS_ID = 0, 1, 2, 3


def build_tokenizer():
    """Char-level tokenizer: every printable ASCII character and "\\n" is one token (others: "?")."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
    # BPE without merges or pre-tokenisation = one token per character; others become "?".
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="?"))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        mask_token=MASK,
        additional_special_tokens=["<|eot_id|>"],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llada_config(vocab_size: int = 128, **overrides):
    """A LLaDAConfig with tiny sizes (ids as in build_tokenizer())."""
    from lm_eval_temporal.llada import LLaDAConfig

    kw = dict(
        d_model=32,
        n_heads=4,
        n_kv_heads=4,
        n_layers=2,
        mlp_hidden_size=64,
        vocab_size=vocab_size,
        embedding_size=vocab_size,
        max_sequence_length=512,
        rope_theta=10000.0,
        mask_token_id=MASK_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        # A wider init than LLaDA's 0.02 so a random tiny model has clear, varied predictions.
        initializer_range=0.5,
    )
    kw.update(overrides)
    return LLaDAConfig(**kw)


def tiny_llada(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """An in-memory random tiny LLaDA in eval mode."""
    from lm_eval_temporal.llada import LLaDAModelLM

    torch.manual_seed(seed)
    return LLaDAModelLM(tiny_llada_config(**overrides)).to(dtype).eval()


def build_tiny_llada(tmp_path: str | Path, seed: int = 0, **overrides) -> Path:
    """Save a random tiny LLaDA (config ``overrides`` as in :func:`tiny_llada_config`) and the
    char tokenizer to ``tmp_path``; return the directory."""
    out = Path(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    tiny_llada(seed, **overrides).save_pretrained(str(out))
    build_tokenizer().save_pretrained(str(out))
    return out


def build_tiny_bert(tmp_path: str | Path, seed: int = 0) -> Path:
    """Save a random tiny BertForMaskedLM and the char tokenizer to ``tmp_path``."""
    from transformers import BertConfig, BertForMaskedLM

    out = Path(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=PAD_ID,
        initializer_range=0.5,
    )
    BertForMaskedLM(config).eval().save_pretrained(str(out))
    build_tokenizer().save_pretrained(str(out))
    return out


def tiny_dream_config(vocab_size: int = 128, **overrides):
    """A DreamConfig with tiny sizes (ids as in build_tokenizer(); grouped-query attention)."""
    from lm_eval_temporal.families.dream.model import DreamConfig

    kw = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rope_theta=10000.0,
              mask_token_id=MASK_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID,
              initializer_range=0.5)  # wide, so a random tiny model has clear, varied predictions
    kw.update(overrides)
    return DreamConfig(**kw)


def tiny_dream(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """An in-memory random tiny Dream in eval mode."""
    from lm_eval_temporal.families.dream.model import DreamModel

    torch.manual_seed(seed)
    return DreamModel(tiny_dream_config(**overrides)).to(dtype).eval()


def build_tiny_dream(tmp_path: str | Path, seed: int = 0, **overrides) -> Path:
    """Save a random tiny Dream and the char tokenizer to ``tmp_path``; return the directory."""
    out = Path(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    tiny_dream(seed, **overrides).save_pretrained(str(out))
    build_tokenizer().save_pretrained(str(out))
    return out
