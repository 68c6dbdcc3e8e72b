"""load_model: LLaDA natively, other masked LMs, token-id resolution, adapters and errors."""

from __future__ import annotations

import json

import pytest
import torch

from lm_eval_temporal import LLaDAModelLM
from lm_eval_temporal.loading import LoadedModel, load_model, resolve_dtype
from lm_eval_temporal.sampler import generate
from tiny_models import EOS_ID, MASK_ID, PAD_ID, build_tiny_bert, build_tiny_llada, build_tokenizer, tiny_llada

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    return build_tiny_llada(tmp_path_factory.mktemp("llada"))


def save(model, tokenizer, path):
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return str(path)


def test_loads_tiny_llada_with_resolved_ids(llada_dir):
    lm = load_model(str(llada_dir), device="cpu")
    assert isinstance(lm, LoadedModel) and type(lm.model) is LLaDAModelLM
    assert (lm.mask_id, lm.eos_id, lm.pad_id) == (MASK_ID, EOS_ID, PAD_ID)
    assert lm.device == torch.device("cpu") and lm.dtype == torch.float32  # auto on CPU
    assert not lm.model.training
    assert lm.name == str(llada_dir)
    assert lm.tokenizer.mask_token_id == MASK_ID
    ids = lm.tokenizer("Q:1+2=", return_tensors="pt").input_ids
    out = generate(lm.model, ids, gen_length=4, steps=2, block_length=4, mask_id=lm.mask_id)
    assert out.sequences.shape == (1, ids.shape[1] + 4)


@pytest.mark.parametrize("name, dtype", [("float64", torch.float64), ("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_dtype_is_applied(llada_dir, name, dtype):
    lm = load_model(str(llada_dir), dtype=name, device="cpu")
    assert lm.dtype == dtype and next(lm.model.parameters()).dtype == dtype


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(ValueError, match="dtype='fp8': expected one of auto, float32, bfloat16, float16, float64"):
        resolve_dtype("fp8")


def test_mask_id_resolution_order(tmp_path):
    tok = build_tokenizer()
    # explicit override wins over the config
    d = save(tiny_llada(mask_token_id=MASK_ID), tok, tmp_path / "a")
    assert load_model(d, device="cpu", mask_id=5).mask_id == 5
    # no mask_token_id in the config: the tokenizer's mask token
    d = save(tiny_llada(mask_token_id=None), tok, tmp_path / "b")
    assert load_model(d, device="cpu").mask_id == MASK_ID
    # neither: an error that says what to pass
    bare = build_tokenizer()
    bare.mask_token = None
    d = save(tiny_llada(mask_token_id=None), bare, tmp_path / "c")
    with pytest.raises(ValueError, match="pass mask_id="):
        load_model(d, device="cpu")
    assert load_model(d, device="cpu", mask_id=MASK_ID).mask_id == MASK_ID


def test_pad_equal_to_mask_is_refused(tmp_path):
    d = save(tiny_llada(pad_token_id=MASK_ID), build_tokenizer(), tmp_path / "config_pad")
    with pytest.raises(ValueError, match="config pad_token_id .* equals the mask id"):
        load_model(d, device="cpu")
    tok = build_tokenizer()
    tok.pad_token = tok.mask_token
    d = save(tiny_llada(), tok, tmp_path / "tokenizer_pad")
    with pytest.raises(ValueError, match="tokenizer pad token .* equals the mask id"):
        load_model(d, device="cpu")


def test_missing_local_path_and_bad_dtype(tmp_path, llada_dir):
    with pytest.raises(ValueError, match="no such local directory"):
        load_model(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ValueError, match="no such local directory"):
        load_model("./relative/missing", device="cpu")
    with pytest.raises(ValueError, match=r"^peft='.*no_adapter': no such local directory"):
        load_model(str(llada_dir), device="cpu", peft=str(tmp_path / "no_adapter"))
    with pytest.raises(ValueError, match="dtype='half'"):
        load_model(str(llada_dir), dtype="half", device="cpu")


def test_path_under_an_existing_folder_fails_at_once(tmp_path, monkeypatch):
    """``runs/tiny`` with a local ``runs`` folder is a path, never a hub id to retry for half a minute."""
    from transformers import PretrainedConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(PretrainedConfig, "get_config_dict", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(ValueError, match=r"^pretrained='runs/tiny': no such local directory$"):
        load_model("runs/tiny", device="cpu")


def test_path_like_hub_id_that_is_neither_says_so(tmp_path, monkeypatch):
    from transformers import PretrainedConfig

    monkeypatch.chdir(tmp_path)  # no local "runs" folder here

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nmore detail")

    monkeypatch.setattr(PretrainedConfig, "get_config_dict", offline)
    # "runs/tiny" reads as a hub id (org/name); a mistyped local folder must not look like a network problem only
    with pytest.raises(OSError, match=r"pretrained='runs/tiny_missing': there is no local directory of that name, "
                                      r"and loading it as a Hugging Face Hub id failed: We couldn't connect") as err:
        load_model("runs/tiny_missing", device="cpu")
    assert "more detail" not in str(err.value) and isinstance(err.value.__cause__, OSError)


def test_bert_masked_lm_loads_and_generates(tmp_path):
    d = build_tiny_bert(tmp_path / "bert")
    assert json.loads((tmp_path / "bert" / "config.json").read_text())["model_type"] == "bert"
    lm = load_model(str(d), device="cpu")
    assert type(lm.model).__name__ == "BertForMaskedLM"
    assert lm.mask_id == MASK_ID  # BertConfig has no mask_token_id: from the tokenizer
    ids = lm.tokenizer(["Q:1+2=", "Q:3+4="], return_tensors="pt")
    out = generate(lm.model, ids.input_ids, ids.attention_mask, gen_length=8, steps=4, block_length=4,
                   mask_id=lm.mask_id, capture=True)
    assert out.sequences.shape == (2, ids.input_ids.shape[1] + 8)
    assert not (out.sequences == lm.mask_id).any()
    assert torch.equal(out.trajectory[:, -1].long(), out.sequences[:, -8:])
    with pytest.raises(ValueError, match="max_position_embeddings=128"):
        generate(lm.model, ids.input_ids, gen_length=128, steps=4, block_length=32, mask_id=lm.mask_id)


def test_lora_adapter_is_applied(tmp_path, llada_dir):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_model(str(llada_dir), device="cpu").model
    lora = get_peft_model(
        tiny_llada(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(str(tmp_path / "adapter"))
    lm = load_model(str(llada_dir), device="cpu", peft=str(tmp_path / "adapter"))
    assert isinstance(lm.model, PeftModel) and not lm.model.training
    ids = torch.tensor([[7, 8, 9, 10]])
    with torch.no_grad():
        assert not torch.allclose(lm.model(input_ids=ids).logits, base(input_ids=ids).logits)
    out = generate(lm.model, ids, gen_length=4, steps=2, block_length=4)  # mask id read through the wrapper
    assert out.sequences.shape == (1, 8)


def test_stop_ids_are_eos_and_eot(tmp_path):
    # The embedded tokenizer has both an EOS and <|eot_id|>: both end an answer.
    from lm_eval_temporal.loading import load_model
    from lm_eval_temporal.tiny import EMBEDDED_DIR

    lm = load_model(str(EMBEDDED_DIR), device="cpu")
    tok = lm.tokenizer
    assert lm.stop_ids == sorted({lm.eos_id, tok.convert_tokens_to_ids("<|eot_id|>")})


def test_compiled_blocks_give_the_eager_tokens(llada_dir):
    """compile=True (torch.compile of the blocks, dynamic shapes): in float32 on the CPU the
    tokens equal the eager model's, for two batch shapes (the second reuses the compiled code)."""
    from lm_eval_temporal.sampler import generate

    eager = load_model(str(llada_dir), dtype="float32", device="cpu")
    compiled = load_model(str(llada_dir), dtype="float32", device="cpu", compile=True)
    gen = dict(gen_length=16, steps=8, block_length=8, capture=True)
    for shape in ((2, 7), (3, 11)):
        ids = torch.randint(4, 100, shape, generator=torch.Generator().manual_seed(shape[1]))
        a, b = generate(eager.model, ids, **gen), generate(compiled.model, ids, **gen)
        assert torch.equal(a.sequences, b.sequences) and torch.equal(a.trajectory, b.trajectory)
