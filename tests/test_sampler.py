"""The sampler against an independent, deliberately naive reference of docs/algorithm.md (Sampling)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_eval_temporal.config import TemporalConfig
from lm_eval_temporal.loading import load_model
from lm_eval_temporal.pipeline import TemporalPipeline
from lm_eval_temporal.sampler import GenerationOutput, SamplerConfig, generate
from tiny_models import EOS_ID, MASK_ID, PAD_ID, build_tiny_llada, tiny_llada

torch.set_num_threads(1)

PROMPTS = [[5, 17, 40, 22, 9, 61, 33], [70, 12], [44, 8, 91, 19, 27]]


@pytest.fixture(scope="module")
def loaded64(tmp_path_factory):
    """Loaded the way users load models, in float64 so the batched and the naive code agree
    to the last bit and token equality cannot hinge on rounding."""
    d = build_tiny_llada(tmp_path_factory.mktemp("tiny_llada"), seed=0)
    return load_model(str(d), dtype="float64", device="cpu")


@pytest.fixture(scope="module")
def model64(loaded64):
    return loaded64.model


def generate_with_commits(model, ids, attn=None, callback=None, **gen):
    """generate() plus the global step at which each generated position was committed, read
    off the ``still_masked`` the step callback sees (a row that stops commits the rest then)."""
    seen = []

    def observe(step, x0, still_masked):
        seen.append(still_masked.clone())
        return callback(step, x0, still_masked) if callback else None

    out = generate(model, ids, attn, step_callback=observe, **gen)
    done = ~torch.stack(seen, dim=1)  # [B, steps seen, G]
    first = torch.where(done.any(1), done.int().argmax(1), done.shape[1])
    commits = torch.minimum(first, (out.steps_run - 1)[:, None])
    if out.trajectory is not None:  # capture also records them: the two accounts agree
        assert torch.equal(out.commit_step, commits)
    else:
        assert out.commit_step is None
    return out, commits


@torch.no_grad()
def reference_generate(model, prompt, *, gen_length, steps, block_length, temperature=0.0, cfg_scale=0.0,
                       remasking="low_confidence", mask_id=MASK_ID, eos_id=EOS_ID, suppress_eos=False,
                       generator=None):
    """docs/algorithm.md (Sampling) for one unpadded prompt, one position at a time. Returns (tokens, trajectory)."""
    P, G = len(prompt), gen_length
    x = list(prompt) + [mask_id] * G
    num_blocks = G // block_length
    per_block = steps // num_blocks
    trajectory = []
    for b in range(num_blocks):
        block_end = (b + 1) * block_length  # relative to the generation span
        n = sum(1 for j in range(b * block_length, block_end) if x[P + j] == mask_id)
        quota = [n // per_block + (1 if i < n % per_block else 0) for i in range(per_block)]
        for i in range(per_block):
            logits = model(input_ids=torch.tensor([x])).logits[0]
            if cfg_scale > 0:
                uncond = model(input_ids=torch.tensor([[mask_id] * P + x[P:]])).logits[0]
                logits = uncond + (cfg_scale + 1) * (logits - uncond)
            logits = logits.clone()
            logits[:, mask_id] = -math.inf
            if suppress_eos:
                logits[:, eos_id] = -math.inf
            V = logits.shape[-1]
            noise = torch.rand((G, V), dtype=torch.float64, generator=generator) if temperature > 0 else None
            uniform = torch.rand((G,), dtype=torch.float32, generator=generator) if remasking == "random" else None
            x0, conf = [], []
            for j in range(G):
                token = x[P + j]
                if token != mask_id:
                    x0.append(token)
                    conf.append(-math.inf)
                    continue
                row = logits[P + j]
                if temperature > 0:
                    pred = int(torch.argmax(row.double().exp() / (-torch.log(noise[j])) ** temperature))
                else:
                    pred = int(torch.argmax(row))
                x0.append(pred)
                if j >= block_end:
                    conf.append(-math.inf)
                elif remasking == "low_confidence":
                    conf.append(float(torch.softmax(row.double(), dim=-1)[pred]))
                else:
                    conf.append(float(uniform[j]))
            ranked = sorted(range(G), key=lambda j: (-conf[j], j))
            for j in ranked[: quota[i]]:
                x[P + j] = x0[j]
            trajectory.append(x0)
    return x, trajectory


def left_pad(prompts, pad=PAD_ID):
    P = max(map(len, prompts))
    ids = torch.full((len(prompts), P), pad, dtype=torch.long)
    attn = torch.zeros((len(prompts), P), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, P - len(p):] = torch.tensor(p)
        attn[r, P - len(p):] = 1
    return ids, attn


PARITY = {
    "one_block_steps_eq_gen": dict(gen_length=12, steps=12, block_length=12),
    "one_block_fewer_steps_uneven": dict(gen_length=12, steps=5, block_length=12),
    "blocks_fewer_steps_uneven": dict(gen_length=10, steps=4, block_length=5),
    "blocks_steps_eq_gen": dict(gen_length=8, steps=8, block_length=4),
    "cfg": dict(gen_length=8, steps=4, block_length=4, cfg_scale=1.5),
    "suppress_eos": dict(gen_length=8, steps=4, block_length=8, suppress_eos=True),
}


@pytest.mark.parametrize("settings", PARITY.values(), ids=PARITY.keys())
def test_matches_naive_reference_row_by_row_in_a_padded_batch(model64, settings):
    ids, attn = left_pad(PROMPTS)
    out = generate(model64, ids, attn, capture=True, **settings)
    P, G = ids.shape[1], settings["gen_length"]
    assert out.sequences.shape == (len(PROMPTS), P + G)
    assert out.trajectory.shape == (len(PROMPTS), settings["steps"], G)
    for r, prompt in enumerate(PROMPTS):
        tokens, trajectory = reference_generate(model64, prompt, **settings)
        assert out.sequences[r, P:].tolist() == tokens[len(prompt):]
        assert out.trajectory[r].tolist() == trajectory
        assert torch.equal(out.sequences[r, :P], ids[r])  # the prompt (and padding) is never written
    if settings.get("suppress_eos"):
        assert not (out.sequences[:, P:] == EOS_ID).any()


@pytest.mark.parametrize(
    "settings",
    [dict(temperature=0.8), dict(remasking="random"), dict(temperature=1.0, remasking="random", cfg_scale=0.5)],
    ids=["gumbel", "random_remasking", "gumbel_random_cfg"],
)
def test_sampling_matches_reference_with_one_generator_per_row(model64, settings):
    gen = dict(gen_length=8, steps=4, block_length=4, **settings)
    ids, attn = left_pad(PROMPTS)
    seeds = [11, 12, 13]
    out = generate(model64, ids, attn, capture=True, generator=[torch.Generator().manual_seed(s) for s in seeds], **gen)
    P = ids.shape[1]
    for r, (prompt, seed) in enumerate(zip(PROMPTS, seeds)):
        tokens, trajectory = reference_generate(model64, prompt, generator=torch.Generator().manual_seed(seed), **gen)
        assert out.sequences[r, P:].tolist() == tokens[len(prompt):]
        assert out.trajectory[r].tolist() == trajectory


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    num_blocks=st.integers(1, 3),
    block_length=st.integers(1, 5),
    data=st.data(),
    prompts=st.lists(st.lists(st.integers(4, 100), min_size=1, max_size=6), min_size=1, max_size=3),
    cfg_scale=st.sampled_from([0.0, 1.0]),
    temperature=st.sampled_from([0.0, 0.7]),
    remasking=st.sampled_from(["low_confidence", "random"]),
)
def test_property_any_schedule_matches_reference(model64, num_blocks, block_length, data, prompts, cfg_scale,
                                                 temperature, remasking):
    per_block = data.draw(st.integers(1, block_length))
    gen = dict(gen_length=num_blocks * block_length, steps=num_blocks * per_block, block_length=block_length,
               cfg_scale=cfg_scale, temperature=temperature, remasking=remasking)
    ids, attn = left_pad(prompts)
    gens = [torch.Generator().manual_seed(r) for r in range(len(prompts))]
    out, commit_step = generate_with_commits(model64, ids, attn, capture=True, generator=gens, **gen)
    P = ids.shape[1]
    for r, prompt in enumerate(prompts):
        tokens, trajectory = reference_generate(model64, prompt, generator=torch.Generator().manual_seed(r), **gen)
        assert out.sequences[r, P:].tolist() == tokens[len(prompt):]
        assert out.trajectory[r].tolist() == trajectory
    assert (commit_step >= 0).all() and (commit_step < gen["steps"]).all()


@pytest.mark.parametrize("settings", [dict(temperature=1.0), dict(remasking="random")], ids=["gumbel", "random"])
def test_same_seed_same_output_different_seed_different_output(model64, settings):
    gen = dict(gen_length=12, steps=6, block_length=6, **settings)
    ids, attn = left_pad(PROMPTS)
    run = lambda seed: generate(model64, ids, attn, generator=torch.Generator().manual_seed(seed), **gen).sequences
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_capture_never_changes_tokens_and_last_capture_is_the_output(model64):
    ids, attn = left_pad(PROMPTS)
    gen = dict(gen_length=12, steps=6, block_length=4, temperature=0.7)
    off, off_commits = generate_with_commits(model64, ids, attn, generator=torch.Generator().manual_seed(3), **gen)
    on, on_commits = generate_with_commits(model64, ids, attn, generator=torch.Generator().manual_seed(3),
                                           capture=True, **gen)
    assert off.trajectory is None
    assert torch.equal(off.sequences, on.sequences)
    assert torch.equal(off_commits, on_commits)
    assert on.trajectory.dtype == torch.int32 and on.trajectory.device.type == "cpu"
    assert torch.equal(on.trajectory[:, -1].long(), on.sequences[:, ids.shape[1]:])


def test_commit_schedule_and_outputs_metadata(model64):
    ids, attn = left_pad(PROMPTS)
    out, commit_step = generate_with_commits(model64, ids, attn, gen_length=10, steps=4, block_length=5, capture=True)
    assert isinstance(out, GenerationOutput)
    assert out.steps_run.tolist() == [4, 4, 4]
    assert not (out.sequences == MASK_ID).any()
    # Block 0 (positions 0-4) commits 3 then 2 tokens at steps 0, 1; block 1 at steps 2, 3.
    for row in commit_step.tolist():
        assert sorted(row[:5]) == [0, 0, 0, 1, 1] and sorted(row[5:]) == [2, 2, 2, 3, 3]
    # A committed token never changes in later captures.
    P = ids.shape[1]
    steps = torch.arange(4)[None, :, None]
    committed = commit_step[:, None, :] <= steps
    final = out.sequences[:, None, P:].expand(-1, 4, -1)
    assert torch.equal(out.trajectory.long()[committed], final[committed])


def test_float32_batch_rows_equal_prompts_alone():
    torch.manual_seed(0)
    model = tiny_llada(seed=1)
    ids, attn = left_pad(PROMPTS)
    gen = dict(gen_length=8, steps=4, block_length=4, cfg_scale=0.5)
    batch = generate(model, ids, attn, **gen).sequences
    P = ids.shape[1]
    for r, p in enumerate(PROMPTS):
        alone = generate(model, torch.tensor([p]), **gen).sequences
        assert torch.equal(batch[r, P:], alone[0, len(p):])


def test_bfloat16_model_runs():
    model = tiny_llada(seed=2, dtype=torch.bfloat16)
    out = generate(model, torch.tensor([PROMPTS[0]]), gen_length=8, steps=4, block_length=4, temperature=0.5,
                   generator=torch.Generator().manual_seed(0), capture=True)
    assert out.sequences.shape == (1, len(PROMPTS[0]) + 8)
    assert not (out.sequences == MASK_ID).any()


class CountingModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.calls = inner, inner.config, 0

    def forward(self, **kw):
        self.calls += 1
        return self.inner(**kw)


def test_step_callback_none_or_false_is_bit_identical(model64):
    ids, attn = left_pad(PROMPTS)
    gen = dict(gen_length=8, steps=4, block_length=4, temperature=0.9, capture=True)
    plain = generate(model64, ids, attn, generator=torch.Generator().manual_seed(5), **gen)
    seen = []

    def never(step, x0, still_masked):
        seen.append((step, x0.shape, still_masked.shape, int(still_masked.sum())))
        return None if step % 2 else torch.zeros(len(PROMPTS), dtype=torch.bool)

    hooked, hooked_commits = generate_with_commits(model64, ids, attn, generator=torch.Generator().manual_seed(5),
                                                   callback=never, **gen)
    _, plain_commits = generate_with_commits(model64, ids, attn, generator=torch.Generator().manual_seed(5), **gen)
    assert torch.equal(plain.sequences, hooked.sequences)
    assert torch.equal(plain.trajectory, hooked.trajectory)
    assert torch.equal(plain_commits, hooked_commits)
    assert [s for s, *_ in seen] == [0, 1, 2, 3]
    assert all(shape == (3, 8) and mshape == (3, 8) for _, shape, mshape, _ in seen)
    assert [n for *_, n in seen] == [3 * 6, 3 * 4, 3 * 2, 0]  # masked count after each step


def test_step_callback_stops_rows_early(model64):
    ids, attn = left_pad(PROMPTS)
    gen = dict(gen_length=8, steps=8, block_length=4, capture=True)
    plain = generate(model64, ids, attn, **gen)
    counting = CountingModel(model64)

    def stop_row1_at_2(step, x0, still_masked):
        return torch.tensor([False, step == 2, False])

    out, commit_step = generate_with_commits(counting, ids, attn, callback=stop_row1_at_2, **gen)
    assert counting.calls == 8
    assert out.steps_run.tolist() == [8, 3, 8]
    P = ids.shape[1]
    # Row 1 committed its step-2 prediction everywhere; later captures repeat it.
    assert torch.equal(out.sequences[1, P:], plain.trajectory[1, 2].long())
    assert all(torch.equal(out.trajectory[1, s], plain.trajectory[1, 2]) for s in range(2, 8))
    assert commit_step[1].max() == 2
    assert not (out.sequences == MASK_ID).any()
    # The other rows are untouched by row 1 leaving the batch.
    for r in (0, 2):
        assert torch.equal(out.sequences[r], plain.sequences[r])
        assert torch.equal(out.trajectory[r], plain.trajectory[r])

    counting.calls = 0
    everyone = generate(counting, ids, attn, step_callback=lambda s, x0, m: torch.full((3,), s == 1), **gen)
    assert counting.calls == 2  # no forward pass once every row has stopped
    assert everyone.steps_run.tolist() == [2, 2, 2]


class ConstantModel(torch.nn.Module):
    """Same logits at every position: every confidence ties, and the mask token scores highest."""

    def __init__(self, vocab_size: int = 16):
        super().__init__()
        self.config = type("Config", (), {"mask_token_id": MASK_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID})()
        self.row = torch.zeros(vocab_size)
        self.row[MASK_ID], self.row[7] = 5.0, 3.0

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.row.expand(*input_ids.shape, -1).clone()})()


def test_ties_commit_leftmost_first_and_mask_token_is_never_predicted():
    out, commit_step = generate_with_commits(ConstantModel(), torch.tensor([[4, 5]]), gen_length=96, steps=48,
                                             block_length=48, capture=True)
    assert commit_step[0].tolist() == [i // 2 for i in range(96)]
    assert out.sequences[0, 2:].tolist() == [7] * 96
    assert out.trajectory[0, 0].tolist() == [7] * 96


def test_mask_id_defaults_to_config_and_int32_ids_accepted(model64):
    ids = torch.tensor([PROMPTS[1]], dtype=torch.int32)
    a = generate(model64, ids, gen_length=4, steps=2, block_length=4)
    b = generate(model64, ids.long(), gen_length=4, steps=2, block_length=4, mask_id=MASK_ID)
    assert a.sequences.dtype == torch.long and torch.equal(a.sequences, b.sequences)


# --------------------------------------------------------------------------- bad input


GOOD = dict(gen_length=8, steps=4, block_length=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gen_length=10, block_length=4, steps=5), "gen_length must be a multiple of block_length"),
        (dict(gen_length=12, block_length=4, steps=4), r"steps=4: expected a multiple of the number of blocks"),
        (dict(steps=0), "steps=0: expected an integer >= 1"),
        (dict(steps=16, block_length=8), r"steps=16: expected 1 <= steps <= gen_length=8"),
        (dict(gen_length=0), "gen_length=0"),
        (dict(remasking="topk"), "remasking='topk': expected one of low_confidence, random"),
        (dict(temperature=-1.0), "temperature=-1.0"),
        (dict(cfg_scale=-0.5), "cfg_scale=-0.5"),
        (dict(gen_length=508, block_length=4, steps=4 * 127), "max_sequence_length=512"),
    ],
)
def test_bad_settings_raise_value_error(model64, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model64, torch.tensor([PROMPTS[0]]), **{**GOOD, **kwargs})


def test_config_object_equals_keyword_form_and_not_both(model64):
    ids, attn = left_pad(PROMPTS)
    cfg = SamplerConfig(gen_length=8, steps=4, block_length=4, temperature=0.7)
    a = generate(model64, ids, attn, config=cfg, generator=torch.Generator().manual_seed(1), capture=True)
    b = generate(model64, ids, attn, generator=torch.Generator().manual_seed(1), capture=True, gen_length=8, steps=4,
                 block_length=4, temperature=0.7)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.trajectory, b.trajectory)
    with pytest.raises(ValueError, match="either config= or the keyword settings"):
        generate(model64, ids, attn, config=cfg, steps=4)
    with pytest.raises(ValueError, match="missing block_length"):
        generate(model64, ids, attn, gen_length=8, steps=4)
    with pytest.raises(ValueError, match="config: expected a SamplerConfig"):
        generate(model64, ids, attn, config={"gen_length": 8})


def test_sampler_config_validate_returns_self():
    cfg = SamplerConfig(gen_length=8, steps=4, block_length=4)
    assert cfg.validate() is cfg and cfg.num_blocks == 2 and cfg.steps_per_block == 2
    with pytest.raises(ValueError, match="remasking"):
        SamplerConfig(8, 4, 4, remasking="x").validate()


def test_bad_inputs_raise_value_error(model64):
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model64, torch.zeros((1, 0), dtype=torch.long), **GOOD)
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model64, torch.tensor([[4, 5], [6, 7]]), torch.tensor([[1, 1], [0, 0]]), **GOOD)
    with pytest.raises(ValueError, match="integer token ids"):
        generate(model64, torch.tensor([[4.0, 5.0]]), **GOOD)
    with pytest.raises(ValueError, match="2-D"):
        generate(model64, torch.tensor([4, 5]), **GOOD)
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(1, 2\)"):
        generate(model64, torch.tensor([[4, 5]]), torch.ones(1, 3), **GOOD)
    with pytest.raises(ValueError, match="left padding"):
        generate(model64, torch.tensor([[4, 5]]), torch.tensor([[1, 0]]), **GOOD)
    with pytest.raises(ValueError, match="padding positions hold the mask id"):
        generate(model64, torch.tensor([[MASK_ID, 5]]), torch.tensor([[0, 1]]), **GOOD)
    with pytest.raises(ValueError, match="generator"):
        generate(model64, torch.tensor([[4, 5]]), generator=[torch.Generator()] * 2, temperature=1.0, **GOOD)


def test_missing_mask_id_and_pad_equal_mask_raise():
    model = tiny_llada(seed=0, mask_token_id=None)
    with pytest.raises(ValueError, match="mask_id: the model config has no mask_token_id; pass mask_id="):
        generate(model, torch.tensor([[4, 5]]), **GOOD)
    assert generate(model, torch.tensor([[4, 5]]), mask_id=MASK_ID, **GOOD).sequences.shape == (1, 10)
    clash = tiny_llada(seed=0, pad_token_id=MASK_ID)
    with pytest.raises(ValueError, match="equals the model's pad_token_id"):
        generate(clash, torch.tensor([[4, 5]]), **GOOD)
    no_eos = tiny_llada(seed=0, eos_token_id=None)
    with pytest.raises(ValueError, match="suppress_eos"):
        generate(no_eos, torch.tensor([[4, 5]]), suppress_eos=True, **GOOD)


def test_capture_benchmark_quick_run(model64):
    """The benchmark's capture memory is what the sampler returns: measured at its quick shape
    (batch 2, 4 steps, 8 tokens), and, for LLaDA-8B settings, computed (and called computed)
    from the shapes and element sizes of what capture returns."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "capture_overhead.py"
    res = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    out = generate(model64, torch.tensor([[5, 17], [70, 12]]), gen_length=8, steps=4, block_length=4, capture=True)
    B, S, G = 8, 256, 512
    assert out.trajectory.shape == (2, 4, 8) and out.commit_step.shape == (2, 8)  # [B, steps, G] and [B, G]
    measured = out.trajectory.nbytes + out.commit_step.nbytes
    assert re.search(rf"capture memory here \(measured: .*\): {measured} bytes$", res.stdout, re.M), res.stdout
    computed = (B * S * G * out.trajectory.element_size() + B * G * out.commit_step.element_size()) / 1e6
    assert re.search(rf"LLaDA-8B settings \(batch {B}, {S} steps, {G} tokens; computed .*, not measured\): "
                     rf"{computed:.2f} MB$", res.stdout, re.M), res.stdout
    assert re.fullmatch(r"capture_overhead_ratio=\d+\.\d+", lines[-1])


# --------------------------------------------------------------------------- parallel decoding


def test_parallel_threshold_never_reached_is_one_token_per_step(model64):
    """A threshold no confidence reaches commits exactly one token per step: the exact schedule
    with steps = gen_length, token for token."""
    ids, attn = left_pad(PROMPTS)
    exact = generate(model64, ids, attn, gen_length=12, steps=12, block_length=4, capture=True)
    par = generate(model64, ids, attn, gen_length=12, steps=3, block_length=4, parallel_threshold=1.0, capture=True)
    assert torch.equal(par.sequences, exact.sequences) and torch.equal(par.trajectory, exact.trajectory)
    assert par.steps_run.tolist() == [12, 12, 12] and torch.equal(par.commit_step, exact.commit_step)


def test_parallel_threshold_commits_whole_blocks_and_rows_stay_independent(model64):
    ids, attn = left_pad(PROMPTS)
    low = generate(model64, ids, attn, gen_length=12, steps=3, block_length=4, parallel_threshold=1e-9, capture=True)
    assert low.steps_run.tolist() == [3, 3, 3]  # every block in one step
    assert low.trajectory.shape == (3, 3, 12) and not (low.sequences == MASK_ID).any()
    assert low.commit_step.tolist() == [[0] * 4 + [1] * 4 + [2] * 4] * 3
    mid = generate(model64, ids, attn, gen_length=12, steps=3, block_length=4, parallel_threshold=0.02, capture=True)
    P = ids.shape[1]
    for r, p in enumerate(PROMPTS):  # each row as its prompt alone, steps included
        alone = generate(model64, torch.tensor([p]), gen_length=12, steps=3, block_length=4, parallel_threshold=0.02,
                         capture=True)
        n = int(alone.steps_run[0])
        assert torch.equal(mid.sequences[r, P:], alone.sequences[0, len(p):]) and int(mid.steps_run[r]) == n
        assert torch.equal(mid.trajectory[r, :n], alone.trajectory[0])
    with pytest.raises(ValueError, match="parallel_threshold: needs remasking=low_confidence"):
        generate(model64, ids, attn, gen_length=12, steps=3, block_length=4, parallel_threshold=0.5, remasking="random")
    with pytest.raises(ValueError, match=r"parallel_threshold=1.5: expected a number in \(0, 1\]"):
        generate(model64, ids, attn, gen_length=12, steps=3, block_length=4, parallel_threshold=1.5)


# --------------------------------------------------------------------------- prefix cache


@contextmanager
def cached_calls(model):
    """The model's forward calls while the block runs, True for each that attended to a cached
    prefix (``prefix_cache=...``) instead of running the whole canvas."""
    calls = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs.get("prefix_cache") is not None), with_kwargs=True)
    try:
        yield calls
    finally:
        hook.remove()


def test_prefix_cache_is_reused_and_exact_where_the_prefix_cannot_see_the_canvas(model64):
    """Four steps per block: each block runs the whole canvas once, then three steps on the
    cache. In a one-layer model the cached keys/values of the prompt and the finished blocks
    depend on those tokens alone, never on the rest of the canvas, so the cache is exact there;
    with two layers they saw the canvas of the block's first step, and the tokens differ."""
    ids, attn = left_pad(PROMPTS)
    gen = dict(gen_length=12, steps=12, block_length=4, capture=True)
    one_layer = tiny_llada(0, dtype=torch.float64, n_layers=1)
    with cached_calls(one_layer) as calls:
        cached = generate(one_layer, ids, attn, prefix_cache=True, **gen)
    assert calls == ([False] + [True] * 3) * 3
    exact = generate(one_layer, ids, attn, **gen)
    assert torch.equal(exact.sequences, cached.sequences) and torch.equal(exact.trajectory, cached.trajectory)
    approx = generate(model64, ids, attn, prefix_cache=True, **gen)
    assert not torch.equal(approx.sequences, generate(model64, ids, attn, **gen).sequences)


def test_prefix_cache_rows_stay_independent(model64):
    ids, attn = left_pad(PROMPTS)
    gen = dict(gen_length=12, block_length=4, capture=True)
    approx = generate(model64, ids, attn, steps=12, prefix_cache=True, **gen)
    assert approx.trajectory.shape == (3, 12, 12) and not (approx.sequences == MASK_ID).any()
    P = ids.shape[1]
    for r, p in enumerate(PROMPTS):
        alone = generate(model64, torch.tensor([p]), steps=12, prefix_cache=True, **gen)
        assert torch.equal(approx.sequences[r, P:], alone.sequences[0, len(p):])
        assert torch.equal(approx.trajectory[r], alone.trajectory[0])


def test_prefix_cache_with_early_stop_gives_each_row_its_tokens_alone(loaded64):
    """Rows that stop leave the batch; the others keep their rows of the cache. (Making the
    cache anew mid-block gave them keys/values of a later canvas than they would have alone.)"""
    prompts = ["Q:1+2=?", "Q:a much longer prompt 12+30-7=?", "x", "Q:9*9", "Tom has 3 apples and buys 4 more.",
               "Q:2", "hello world", "Q:100-1"]
    pipe = TemporalPipeline(loaded64, TemporalConfig(early_stop="stable", stop_window=3))
    sampler = SamplerConfig(gen_length=24, steps=24, block_length=8, prefix_cache=True)
    batch = pipe.run(prompts, sampler, "gsm8k")
    ran = [len(r.answers) for r in batch.records]
    # rows stop at several different steps, some in the middle of a block
    assert len(set(ran)) >= 4 and sum(n < 24 and n % 8 != 0 for n in ran) >= 3, ran
    for r, p in enumerate(prompts):
        alone = pipe.run([p], sampler, "gsm8k")
        assert torch.equal(batch.sequences[r], alone.sequences[0]), r
        assert batch.records[r].answers == alone.records[0].answers, r


def test_prefix_cache_refuses_what_it_cannot_do(model64):
    ids = torch.tensor([PROMPTS[0]])
    with pytest.raises(ValueError, match="prefix_cache: not available with cfg_scale"):
        generate(model64, ids, prefix_cache=True, cfg_scale=1.0, **GOOD)
    with pytest.raises(ValueError, match="prefix_cache: not available with parallel_threshold"):
        generate(model64, ids, prefix_cache=True, parallel_threshold=0.9, **GOOD)
    with pytest.raises(ValueError, match="prefix_cache: this model's forward takes no prefix_cache"):
        generate(ConstantModel(), ids, prefix_cache=True, **GOOD)
