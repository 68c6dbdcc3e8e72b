"""Character-level tokenizer with byte fallback for the embedded tiny LLaDA model.

Every printable ASCII character (and ``\\n``, ``\\t``) is one token; any other character
is encoded as its UTF-8 bytes (``<0x..>`` tokens, as Llama's byte fallback does), so any
text -- GSM8K or SVAMP prompts, unicode -- encodes and decodes back exactly.

Special tokens: ``<|mdm_mask|>`` (the diffusion mask), ``<|endoftext|>`` (EOS),
``<|pad|>`` (padding, distinct from the mask), ``<|startoftext|>`` (BOS) and
``<|eot_id|>`` (end of a chat turn). Built with the ``tokenizers`` library and saved as a
``PreTrainedTokenizerFast`` that ``AutoTokenizer.from_pretrained(dir)`` loads offline.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SPECIAL_TOKENS", "CHAT_TEMPLATE", "build_tokenizer", "save_tokenizer"]

MASK, EOS, PAD, BOS, EOT = "<|mdm_mask|>", "<|endoftext|>", "<|pad|>", "<|startoftext|>", "<|eot_id|>"
SPECIAL_TOKENS = [MASK, EOS, PAD, BOS, EOT]

# user/assistant turns; add_generation_prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _vocab() -> dict[str, int]:
    tokens = list(SPECIAL_TOKENS)
    tokens += ["\n", "\t"] + [chr(c) for c in range(32, 127)]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    tokens += ["<|user|>", "<|assistant|>", "<|system|>"]
    return {t: i for i, t in enumerate(tokens)}


def build_tokenizer():
    """A fresh ``PreTrainedTokenizerFast`` (vocabulary of 369 tokens)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = _vocab()
    # BPE without merges and without pre-tokenisation = one token per known character,
    # UTF-8 bytes for everything else.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, fuse_unk=False))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(SPECIAL_TOKENS + ["<|user|>", "<|assistant|>", "<|system|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        mask_token=MASK,
        additional_special_tokens=[EOT],
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(out_dir: str | Path):
    tok = build_tokenizer()
    tok.save_pretrained(str(out_dir))
    return tok
