"""DiffusionGemma family: capture through transformers' own generate, step counting,
settings, recognition and the seed rule, on a tiny random checkpoint built here (offline)."""

from __future__ import annotations

import json

import pytest
import torch

from lm_eval_temporal.decode import left_pad
from lm_eval_temporal.families import diffusion_gemma as dg
from tiny_diffusion_gemma import CANVAS, GENERATION, build_tiny_diffusion_gemma
from tiny_models import PAD_ID, tiny_llada_config

torch.set_num_threads(1)  # tiny matrices: extra threads only add synchronisation

PROMPTS = ["1+2=", "What is 3*4? Answer:", "hello", "The sky is"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_diffusion_gemma(tmp_path_factory.mktemp("dgemma"))


@pytest.fixture(scope="module")
def loaded(ckpt):
    return dg.load(str(ckpt), dtype=torch.float32)


@pytest.fixture(scope="module")
def batch(loaded):
    _, tok = loaded
    return left_pad([tok(p)["input_ids"] for p in PROMPTS], tok.pad_token_id)


@pytest.fixture(scope="module")
def settings(loaded):
    return dg.DiffusionGemmaSettings.from_generation_config(loaded[0].generation_config)


@pytest.fixture(scope="module")
def run(loaded, batch, settings):
    ids, att = batch
    return dg.denoise(loaded[0], ids, att, settings, seed=0, capture=True)


class _Events:
    """A plain streamer recording what transformers hands out, in order, independently of the
    family code: ("put", canvas) and ("draft", argmax canvas) events."""

    def __init__(self):
        self.events = []

    def put(self, value):
        self.events.append(("put", value.clone()))

    def put_draft(self, value):
        self.events.append(("draft", value.clone()))

    def end(self):
        pass


def _generate(model, ids, att, settings, seed, streamer=None):
    torch.manual_seed(seed)
    mask = {} if att is None else {"attention_mask": att}  # generate rejects attention_mask=None
    return model.generate(ids, streamer=streamer, **mask, **settings.to_generate_kwargs())


def test_the_run_exercises_several_canvases_and_uneven_stops(run):
    # the other tests mean something only if rows stop at different steps over several canvases
    assert run.sequences.shape[1] > CANVAS and run.sequences.shape[1] % CANVAS == 0
    assert len(set(run.steps_run.tolist())) > 1
    assert (run.sequences == PAD_ID).any(dim=1).any()  # some row finished early at EOS


def test_last_captured_step_is_what_transformers_generate_returns(loaded, batch, settings, run):
    model, _ = loaded
    ids, att = batch
    out = _generate(model, ids, att, settings, seed=0)
    assert torch.equal(run.sequences, out.sequences[:, ids.shape[1]:])
    assert run.trajectory.dtype == torch.int32 and run.trajectory.device.type == "cpu"
    assert run.trajectory.shape == (len(PROMPTS), int(run.steps_run.max()), run.sequences.shape[1])
    assert torch.equal(run.trajectory[:, -1].long(), run.sequences)


def test_captured_steps_equal_transformers_decoder_passes(loaded, batch, settings, run):
    model, _ = loaded
    ids, att = batch
    out = _generate(model, ids, att, settings, seed=0)
    # transformers reports non-pad tokens / decoder passes per row
    valid = (out.sequences[:, ids.shape[1]:] != PAD_ID).sum(dim=1).double()
    passes = torch.round(valid / out.tokens_per_forward.double()).long()
    assert torch.equal(run.steps_run, passes)
    assert torch.equal(run.forward_passes, passes)


def test_single_row_views_are_committed_canvases_then_the_streamed_draft(loaded, settings):
    # with one row, every streamed draft is a counted step (generate stops the loop as soon as
    # the row stops); its view = committed canvases + that draft (pad after its first EOS) + pad
    model, tok = loaded
    eos = torch.tensor(model.generation_config.eos_token_id)
    ids = torch.tensor([tok(PROMPTS[1])["input_ids"]])
    plain = _Events()
    out = _generate(model, ids, None, settings, seed=3, streamer=plain)
    r = dg.denoise(model, ids, None, settings, seed=3, capture=True)
    drafts = [v[0] for kind, v in plain.events if kind == "draft"]
    assert int(r.steps_run[0]) == int(r.forward_passes[0]) == len(drafts) == r.trajectory.shape[1]
    committed, step = [], 0
    for kind, value in plain.events[1:]:  # the first put is the prompt
        if kind == "put":
            committed.append(value[0])
            continue
        view, start = r.trajectory[0, step].long(), len(committed) * CANVAS
        assert torch.equal(view[:start], torch.cat(committed) if committed else view[:0])
        is_eos = torch.isin(value[0], eos)
        keep = torch.cumsum(is_eos.int(), 0) - is_eos.int() == 0  # up to and including the first EOS
        assert torch.equal(view[start:start + CANVAS][keep], value[0][keep])
        assert (view[start:start + CANVAS][~keep] == PAD_ID).all()
        assert (view[start + CANVAS:] == PAD_ID).all()
        step += 1
    assert torch.equal(r.sequences, out.sequences[:, ids.shape[1]:])


def test_rows_that_stopped_repeat_their_last_view(run):
    for r, n in enumerate(run.steps_run.tolist()):
        assert (run.trajectory[r, n - 1:] == run.trajectory[r, n - 1]).all()


def test_without_capture_same_tokens_and_counts(loaded, batch, settings, run):
    ids, att = batch
    r = dg.denoise(loaded[0], ids, att, settings, seed=0, capture=False)
    assert r.trajectory is None
    assert torch.equal(r.sequences, run.sequences) and torch.equal(r.steps_run, run.steps_run)


# --- seed rule ---------------------------------------------------------------------------

def test_same_seed_same_batch_same_tokens_and_steps(loaded, batch, settings, run):
    ids, att = batch
    again = dg.denoise(loaded[0], ids, att, settings, seed=0, capture=True)
    assert torch.equal(again.sequences, run.sequences) and torch.equal(again.trajectory, run.trajectory)
    other = dg.denoise(loaded[0], ids, att, settings, seed=1, capture=False)
    assert not torch.equal(other.sequences, run.sequences)


def test_callers_rng_is_left_as_it_was(loaded, batch, settings):
    ids, att = batch
    torch.manual_seed(123)
    before = torch.get_rng_state()
    dg.denoise(loaded[0], ids, att, settings, seed=0, capture=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_batch_composition_changes_a_row_as_the_readme_states(loaded, settings):
    # The documented limit of transformers' generation (global RNG draws shaped [batch, canvas];
    # positions counted from the padded start): if this starts failing, transformers made rows
    # batch-independent and the seed rule in the docs should say so.
    model, tok = loaded
    row = torch.tensor([tok(PROMPTS[0])["input_ids"]])
    alone = dg.denoise(model, row, None, settings, seed=0, capture=False).sequences
    copies = dg.denoise(model, row.repeat(3, 1), None, settings, seed=0, capture=False).sequences
    assert not any(torch.equal(c, alone[0]) for c in copies)
    assert not torch.equal(copies[0], copies[1])  # the same prompt twice in one batch: two draws
    # left padding alone (one row, same RNG draws) also moves the row's positions
    padded = torch.cat([torch.full((1, 5), PAD_ID), row], dim=1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones_like(row)], dim=1)
    assert not torch.equal(dg.denoise(model, padded, mask, settings, seed=0, capture=False).sequences, alone)


# --- settings ----------------------------------------------------------------------------

def test_settings_come_from_the_checkpoints_generation_config(ckpt, settings):
    saved = json.loads((ckpt / "generation_config.json").read_text())
    assert settings.as_record() == {
        "max_new_tokens": saved["max_new_tokens"], "max_denoising_steps": saved["max_denoising_steps"],
        "t_min": saved["t_min"], "t_max": saved["t_max"], "entropy_bound": saved["sampler_config"]["entropy_bound"],
        "stability_threshold": saved["stability_threshold"], "confidence_threshold": saved["confidence_threshold"]}


def test_overrides_by_name_and_none_keeps_the_checkpoints(loaded):
    gen = loaded[0].generation_config
    s = dg.DiffusionGemmaSettings.from_generation_config(gen, max_denoising_steps=3, t_min=0, entropy_bound=1, t_max=None)
    assert (s.max_denoising_steps, s.t_min, s.entropy_bound, s.t_max) == (3, 0.0, 1.0, GENERATION["t_max"])
    assert isinstance(s.t_min, float) and isinstance(s.entropy_bound, float)


def test_unset_fields_are_transformers_defaults():
    from transformers import DiffusionGemmaGenerationConfig

    s = dg.DiffusionGemmaSettings.from_generation_config(DiffusionGemmaGenerationConfig())
    # the defaults transformers documents for DiffusionGemma's generate
    assert s.as_record() == dict(max_new_tokens=256, max_denoising_steps=48, t_min=0.4, t_max=0.8,
                                 entropy_bound=0.1, stability_threshold=1, confidence_threshold=0.005)


def test_override_reaches_generate(loaded, batch):
    ids, att = batch
    s = dg.DiffusionGemmaSettings.from_generation_config(loaded[0].generation_config, max_denoising_steps=2,
                                                         max_new_tokens=CANVAS)
    r = dg.denoise(loaded[0], ids, att, s, seed=0, capture=True)
    assert r.sequences.shape[1] == CANVAS and int(r.steps_run.max()) <= 2


@pytest.mark.parametrize("name, value, expected", [
    ("max_denoising_steps", 0, "max_denoising_steps=0: expected an integer >= 1"),
    ("max_denoising_steps", 2.5, "max_denoising_steps=2.5: expected an integer"),
    ("max_new_tokens", True, "max_new_tokens=True: expected an integer"),
    ("stability_threshold", -1, "stability_threshold=-1: expected an integer >= 0"),
    ("entropy_bound", 0, "entropy_bound=0.0: expected a number > 0"),
    ("confidence_threshold", "high", "confidence_threshold='high': expected a number"),
    ("t_min", -0.1, "t_min=-0.1: expected a number >= 0"),
    ("t_max", 0.05, "expected t_max > t_min, got t_max=0.05, t_min=0.1"),
    ("block_length", 32, "unknown DiffusionGemma setting(s) ['block_length']"),
])
def test_bad_settings_name_the_argument(loaded, name, value, expected):
    with pytest.raises(ValueError) as e:
        dg.DiffusionGemmaSettings.from_generation_config(loaded[0].generation_config, **{name: value})
    assert expected in str(e.value)


# --- recognise and load ------------------------------------------------------------------

def test_recognises_diffusion_gemma_and_not_llada(ckpt):
    from transformers import AutoConfig

    assert dg.recognises(AutoConfig.from_pretrained(str(ckpt)))
    assert dg.recognises(json.loads((ckpt / "config.json").read_text()))
    assert not dg.recognises(tiny_llada_config())
    from lm_eval_temporal.llada import LLaDAConfig

    assert not dg.recognises(LLaDAConfig())


def test_load_gives_an_eval_model_and_its_tokenizer(loaded):
    model, tok = loaded
    assert type(model).__name__ == "DiffusionGemmaForBlockDiffusion" and not model.training
    assert model.dtype == torch.float32 and tok.pad_token_id == PAD_ID
    assert "_prepare_diffusion_stopping_criteria" not in model.__dict__  # denoise left no patch behind


def test_load_fills_missing_pad_and_eos_from_the_tokenizer(tmp_path):
    ckpt = build_tiny_diffusion_gemma(tmp_path)
    path = ckpt / "generation_config.json"
    gen = json.loads(path.read_text())
    del gen["pad_token_id"], gen["eos_token_id"]
    path.write_text(json.dumps(gen))
    model, tok = dg.load(str(ckpt), dtype=torch.float32)
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_denoise_needs_pad_and_eos(loaded, batch, settings):
    model, _ = loaded
    ids, att = batch
    pad = model.generation_config.pad_token_id
    model.generation_config.pad_token_id = None
    try:
        with pytest.raises(ValueError, match="pad_token_id and eos_token_id"):
            dg.denoise(model, ids, att, settings, seed=0, capture=False)
    finally:
        model.generation_config.pad_token_id = pad
