"""Temporal Consistency Reinforcement: rewards, advantages, estimator, loss, trainer, config/CLI.

Expected values are worked out by hand in the comments; the trainer tests use a randomly
initialised two-layer LLaDA so they run in seconds on a CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lm_eval_temporal.tcr import advantages, config, logprobs, loss, rewards

# ---------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matrices: a second OpenMP thread only adds synchronisation, which on a loaded
    # 2-core machine costs ~100x (barrier spinning against other processes).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny_loaded(seed: int = 0):
    """A fresh random tiny LLaDA and a char tokenizer (get_peft_model mutates the model in
    place, so every trainer gets its own)."""
    try:  # the shared test helpers, where present
        from tiny_models import build_tokenizer, tiny_llada
    except ImportError:
        from lm_eval_temporal.llada import LLaDAConfig, LLaDAModelLM
        from lm_eval_temporal.tiny.tokenizer import build_tokenizer

        def tiny_llada(seed: int = 0, vocab_size: int = 0):
            torch.manual_seed(seed)
            t = build_tokenizer()
            return LLaDAModelLM(LLaDAConfig(
                d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=vocab_size,
                embedding_size=vocab_size, max_sequence_length=128, rope_theta=10000.0, initializer_range=0.5,
                mask_token_id=t.mask_token_id, eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id,
                bos_token_id=t.bos_token_id,
            )).eval()

    tok = build_tokenizer()
    model = tiny_llada(seed=seed, vocab_size=max(128, len(tok)))
    assert model.config.mask_token_id == tok.mask_token_id and model.config.pad_token_id == tok.pad_token_id
    from lm_eval_temporal.loading import LoadedModel

    return LoadedModel(model=model, tokenizer=tok, mask_id=tok.mask_token_id, eos_id=tok.eos_token_id,
                       pad_id=tok.pad_token_id, device=torch.device("cpu"), dtype=torch.float32, name="tiny")


def _problems(n: int = 6):
    from lm_eval_temporal.tcr.data import Problem
    from lm_eval_temporal.tiny import arith

    qs = ["1+2", "3+4", "10-5", "7+8-2", "20-3", "5+5"][:n]
    return [Problem(q, arith.prompt_text(q), str(arith.solve(q)[1])) for q in qs]


def _cfg(tmp_path: Path, **kw) -> config.TCRConfig:
    base = dict(
        output_dir=str(tmp_path / "run"), num_generations=2, prompts_per_batch=2, gen_length=8, steps=4,
        block_length=4, temperature=0.9, num_iterations=2, max_steps=2, lora_r=4, lora_alpha=8.0,
        lora_dropout=0.0, learning_rate=1e-2, max_grad_norm=1.0, rewards=["tse", "accuracy"],
        report_to=["jsonl"], progress=False, cpu=True, seed=3,
    )
    base.update(kw)
    return config.TCRConfig(**base).validate()


def _trainer(tmp_path: Path, **kw):
    from lm_eval_temporal.tcr.trainer import TCRTrainer

    return TCRTrainer(_cfg(tmp_path, **kw), loaded=_tiny_loaded(), problems=_problems())


def _metrics(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ---------------------------------------------------------------------------- rewards


def test_tse_reward_hand_values():
    # T = 4 steps, skip the first half -> steps 2 and 3 are kept.
    # Agreeing steps: entropy 0. Two different answers with equal weight (alpha 0): 1 bit.
    sa = [[None, "7", "5", "5"], [None, "1", "2", "3"]]
    r = rewards.tse_reward(["p", "p"], ["", ""], step_answers=sa, task="gsm8k", tse_alpha=0.0, cluster="exact")
    assert r == pytest.approx([0.0, -1.0], abs=1e-9)
    # alpha 12.8: weights exp(12.8*2/4) and exp(12.8*3/4) -> shares 1/(1+e^3.2) = 0.039166 and
    # 0.960834 -> H = 0.039166*4.6742 + 0.960834*0.057638 = 0.23845 bits.
    r = rewards.tse_reward(["p"], [""], step_answers=[[None, "1", "2", "3"]], task="gsm8k", cluster="exact")
    assert r[0] == pytest.approx(-0.23845, abs=1e-4)
    # Through the config: weight 2.0 by default -> total = -2 * TSE.
    cfg = config.TCRConfig(rewards=["tse"])
    total, parts = rewards.combine(rewards.build_rewards(cfg), ["p"], [""], step_answers=[[None, "1", "2", "3"]],
                                   gold=["3"], task="gsm8k")
    assert parts["tse"][0] == pytest.approx(-0.23845, abs=1e-4)
    assert total[0] == pytest.approx(-0.4769, abs=2e-4)


def test_scoring_rules_at_corners():
    sr = rewards.scoring_rule
    # spherical: p_y / sqrt(c^2 + (1-c)^2)
    assert [sr(1, True), sr(1, False), sr(0, True), sr(0, False)] == pytest.approx([1, 0, 0, 1])
    assert sr(0.5, True) == pytest.approx(1 / math.sqrt(2)) and sr(0.5, False) == pytest.approx(1 / math.sqrt(2))
    # brier: 1 - (y - c)^2
    assert [sr(c, y, "brier") for c, y in [(1, True), (1, False), (0, True), (0, False), (0.5, True)]] == pytest.approx(
        [1, 0, 0, 1, 0.75])
    # logarithmic: ln p_y, floored at ln 1e-4
    assert sr(1, True, "logarithmic") == 0.0 and sr(0, False, "logarithmic") == 0.0
    assert sr(0, True, "logarithmic") == pytest.approx(math.log(1e-4))
    assert sr(0.5, False, "logarithmic") == pytest.approx(math.log(0.5))
    # c = 1 - TSE / log2(steps): 0 bits -> 1; 7 bits at 128 steps -> 0; 3.5 bits -> 0.5.
    assert [rewards.confidence_from_tse(t, 128) for t in (0.0, 7.0, 3.5, 9.0)] == pytest.approx([1, 0, 0.5, 0])
    with pytest.raises(ValueError, match="scoring rule"):
        sr(0.5, True, "hinge")


def test_confidence_accuracy_and_format_rewards():
    # Four agreeing steps -> TSE 0 -> c = 1: spherical 1 when right, 0 when wrong.
    sa = [["5", "5", "5", "5"]] * 2
    texts = ["2+3=5;#### 5", "2+3=5;#### 5"]
    conf = rewards.confidence_reward(["p", "p"], texts, step_answers=sa, gold=["5", "6"], task="gsm8k")
    assert conf == pytest.approx([1.0, 0.0])
    assert rewards.accuracy_reward(["p", "p"], texts, gold=["5", "6"], task="gsm8k") == [1.0, 0.0]
    assert rewards.format_reward(["p", "p"], ["#### 5", "no answer here"], task="gsm8k") == [1.0, 0.0]


# ---------------------------------------------------------------------------- advantages


def test_group_advantages():
    a = advantages.group_advantages([1, 2, 3, 4, 4, 4], 3)
    assert a.tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    s = advantages.group_advantages([1, 2, 3, 4, 4, 4], 3, scale=True)  # group std 1 and 0
    assert s.tolist() == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="groups of 4"):
        advantages.group_advantages([1, 2, 3], 4)


# ---------------------------------------------------------------------------- estimator


def _estimator_batch(loaded):
    from lm_eval_temporal.decode import encode_prompt, left_pad

    ids, attn = left_pad([encode_prompt(loaded.tokenizer, t) for t in ["Q:1+2=?\nA:", "Q:12+35-7=?\nA:", "Q:3=?\nA:"]],
                         loaded.pad_id)
    comp = torch.randint(5, 100, (3, 6), generator=torch.Generator().manual_seed(0))
    return ids, attn, comp


def test_logprob_estimator_deterministic_and_permutation_equivariant():
    loaded = _tiny_loaded()
    ids, attn, comp = _estimator_batch(loaded)
    seeds = [11, 22, 33]
    kw = dict(mask_id=loaded.mask_id, p_mask_prompt=0.5)
    with torch.no_grad():
        torch.manual_seed(0)
        a = logprobs.completion_logprobs(loaded.model, ids, attn, comp, seeds, **kw)
        torch.manual_seed(123)  # the global RNG plays no part
        b = logprobs.completion_logprobs(loaded.model, ids, attn, comp, seeds, **kw)
        perm = [2, 0, 1]
        c = logprobs.completion_logprobs(loaded.model, ids[perm], attn[perm], comp[perm], [seeds[i] for i in perm], **kw)
        d = logprobs.completion_logprobs(loaded.model, ids, attn, comp, [44, 55, 66], **kw)
        n = int(attn[2].sum())
        one = logprobs.completion_logprobs(loaded.model, ids[2:, -n:], attn[2:, -n:], comp[2:], seeds[2:], **kw)
    assert a.shape == (3, 6) and torch.isfinite(a).all() and (a < 0).all()
    assert torch.equal(a, b)
    assert torch.allclose(c, a[perm], atol=1e-5)
    assert not torch.allclose(d, a)  # other seeds, other prompt masks
    assert torch.allclose(one, a[2:], atol=1e-5)  # a row's estimate ignores its neighbours' padding
    x = logprobs.masked_inputs(ids, attn, comp, seeds, **kw)
    assert (x[:, ids.shape[1]:] == loaded.mask_id).all()  # completion fully masked
    assert not (x[:, : ids.shape[1]][attn == 0] == loaded.mask_id).any()  # padding is never "masked"


def test_prompt_noise_rate():
    attn = torch.ones(64, 100, dtype=torch.long)
    m = logprobs.prompt_noise_mask(attn, list(range(64)), 0.15)
    assert 0.12 < m.float().mean().item() < 0.18


# ---------------------------------------------------------------------------- loss


def test_completion_mask_and_loss_hand_values():
    eos = 1
    m = loss.completion_mask(torch.tensor([[5, eos, eos, eos], [5, 6, 7, 8], [eos, 2, eos, 3]]), [eos])
    assert m.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    ones = torch.ones(2, 2, dtype=torch.bool)
    z = torch.zeros(2, 2)
    # ratio 1: per-token loss -A -> [-1, +1] -> mean 0; KL 0 against an identical reference.
    out = loss.grpo_loss(z, z, z, torch.tensor([1.0, -1.0]), ones, epsilon=0.5, beta=0.04)
    assert out.loss.item() == 0.0 and out.kl == 0.0 and out.ratio_mean == 1.0 and out.clip_fraction == 0.0
    # ratio 2, eps 0.5: A = +1 -> -min(2, 1.5) = -1.5 (clipped); A = -1 -> -min(-2, -1.5) = 2 (not).
    lp = torch.full((2, 2), math.log(2.0))
    out = loss.grpo_loss(lp, z, None, torch.tensor([1.0, -1.0]), ones, epsilon=0.5, beta=0.0)
    assert out.loss.item() == pytest.approx((-1.5 + 2.0) / 2)
    assert out.clip_fraction == pytest.approx(0.5)
    # k3 KL with ref - logp = -ln 2: e^-ln2 + ln2 - 1 = 0.193147; beta 0.1 adds 0.0193147 per token.
    out = loss.grpo_loss(lp, lp.detach(), z, torch.tensor([0.0, 0.0]), ones, epsilon=0.5, beta=0.1)
    assert out.kl == pytest.approx(0.193147, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.0193147, abs=1e-6)
    # Tokens after the first EOS do not count: the masked-out token's huge loss is ignored.
    mask = torch.tensor([[True, False], [True, True]])
    lp2 = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    out = loss.grpo_loss(lp2, torch.zeros(2, 2), None, torch.tensor([1.0, 1.0]), mask, epsilon=0.5, beta=0.0)
    assert out.loss.item() == pytest.approx(-1.0)


def test_loss_normalisation_tokens_vs_completion_by_hand():
    # Two completions, 1 and 3 kept tokens, ratio 1 everywhere (old = logp), no KL:
    # per-token loss = -A = [-1] for the short one and [+2, +2, +2] for the long one.
    lp = torch.zeros(2, 3)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    adv = torch.tensor([1.0, -2.0])
    kw = dict(epsilon=0.5, beta=0.0)
    # d1 (default): sum over the batch's kept tokens / their number = (-1 + 6) / 4 = 1.25.
    tokens = loss.grpo_loss(lp, lp, None, adv, mask, **kw)
    assert tokens.loss.item() == pytest.approx(1.25) and tokens.tokens == 4
    assert loss.grpo_loss(lp, lp, None, adv, mask, normalization="tokens", **kw).loss.item() == pytest.approx(1.25)
    # Per completion: mean(-1 / 1, 6 / 3) = mean(-1, 2) = 0.5.
    per = loss.grpo_loss(lp, lp, None, adv, mask, normalization="completion", **kw)
    assert per.loss.item() == pytest.approx(0.5)
    # Per-token weights (the trajectory estimator's n/k, 0 for undrawn tokens) scale the terms,
    # not the normaliser: weights [2, 0, 0] / [0, 3, 0] -> tokens (-2 + 6) / 4 = 1.0; completion
    # mean(-2 / 1, 6 / 3) = 0.0.
    w = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert loss.grpo_loss(lp, lp, None, adv, mask, weights=w, **kw).loss.item() == pytest.approx(1.0)
    assert loss.grpo_loss(lp, lp, None, adv, mask, weights=w, normalization="completion", **kw).loss.item() == \
        pytest.approx(0.0)
    with pytest.raises(ValueError, match="normalization='sum'"):
        loss.grpo_loss(lp, lp, None, adv, mask, normalization="sum", **kw)


def test_paper_defaults_for_advantages_estimator_and_normalisation():
    c = config.TCRConfig()
    assert c.scale_rewards is False  # the paper does not divide by the group std
    assert (c.estimator, c.trajectory_steps, c.loss_normalization) == ("one_step", 4, "tokens")
    c = config.load_config(None, ["--estimator", "trajectory", "--trajectory_steps", "8",
                                  "--loss_normalization", "completion"])
    assert (c.estimator, c.trajectory_steps, c.loss_normalization) == ("trajectory", 8, "completion")
    for argv, msg in [(["--estimator", "exact"], "estimator='exact'"), (["--trajectory_steps", "0"], "trajectory_steps='0': expected an integer >= 1"),
                      (["--loss_normalization", "sum"], "loss_normalization='sum'")]:
        with pytest.raises(config.ConfigError, match=msg):
            config.load_config(None, argv)


# ---------------------------------------------------------------------------- trainer


def test_first_inner_iteration_ratio_one_and_kl_zero(tmp_path):
    # Two micro-batches of one prompt each: exercises gradient accumulation too.
    tr = _trainer(tmp_path, num_iterations=2, max_steps=2, lora_dropout=0.1, beta=0.04, prompts_per_batch=1,
                  gradient_accumulation_steps=2)
    names = [n for n, _ in tr.policy.named_modules() if n.endswith("lora_A")]
    assert names and all(".blocks." in n for n in names)  # the head (transformer.ff_out) has no LoRA
    assert any("blocks.0.ff_out" in n for n in names)
    tr.train()
    recs = _metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2]
    first = recs[0]
    assert first["inner_iteration"] == 0
    assert first["ratio_mean"] == 1.0 and first["clip_fraction"] == 0.0
    assert first["kl"] == 0.0  # LoRA B starts at zero: the policy equals the reference
    for key in ("reward", "reward/tse", "reward/accuracy", "tse", "accuracy", "lr", "grad_norm"):
        assert key in first
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "adapter_config.json").is_file()


def test_lora_on_the_head_is_refused_when_it_would_be_a_no_op(tmp_path):
    from lm_eval_temporal.tcr.trainer import lora_target_regex

    import re

    rx = lora_target_regex(["q_proj", "ff_out"])
    assert re.fullmatch(rx, "base_model.model.model.transformer.blocks.3.ff_out")
    assert not re.fullmatch(rx, "base_model.model.model.transformer.ff_out")
    # LLaDAModelLM multiplies by the head's weight without calling the module.
    with pytest.raises(config.ConfigError, match="lora_include_head"):
        _trainer(tmp_path, lora_include_head=True)


def test_one_step_moves_logprobs_with_the_advantage_sign(tmp_path):
    from lm_eval_temporal.tcr.rewards import WeightedReward

    tr = _trainer(tmp_path, num_iterations=1, max_steps=1, learning_rate=5e-3, beta=0.0, prompts_per_batch=2)
    # Reward the first completion of each group: advantages [+0.5, -0.5] per prompt.
    tr.reward_fns = [WeightedReward("first", lambda p, c, **k: [1.0 if i % 2 == 0 else 0.0 for i in range(len(c))], 1.0)]
    seen = []
    real = tr._rollout
    tr._rollout = lambda rnd, m: seen.append(real(rnd, m)) or seen[-1]
    tr.train()
    ro = seen[0]
    seeds = [7] * len(ro)
    policy = tr.policy.eval()
    with torch.no_grad():
        after = tr._logprobs(policy, ro, seeds)
        with policy.disable_adapter():  # = the policy before the step (LoRA B was zero)
            before = tr._logprobs(policy, ro, seeds)
    m = ro.completion_mask.float()
    delta = ((after - before) * m).sum(1) / m.sum(1)
    assert (delta[0::2] > 0).all(), delta
    assert (delta[1::2] < 0).all(), delta


def test_resume_equals_uninterrupted(tmp_path):
    from safetensors.torch import load_file

    kw = dict(num_iterations=2, max_steps=4, save_steps=2, lora_dropout=0.2, lr_scheduler="linear", beta=0.04)
    a = _trainer(tmp_path / "a", **kw)
    a.train()
    b = _trainer(tmp_path / "b", **kw)
    b.train(until_step=2)  # "interrupted" after the first round's checkpoint
    assert not (tmp_path / "b" / "run" / "adapter_model.safetensors").exists()
    assert (tmp_path / "b" / "run" / "checkpoints" / "step-0000002" / "state.json").is_file()
    torch.manual_seed(999)  # the resumed run must not depend on the state it is started in
    c = _trainer(tmp_path / "b", **kw)
    c.train()
    assert c.step == 4
    wa = load_file(str(tmp_path / "a" / "run" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "run" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rs]  # noqa: E731
    assert strip(_metrics(tmp_path / "a" / "run" / "metrics.jsonl")) == strip(
        _metrics(tmp_path / "b" / "run" / "metrics.jsonl"))
    # Running a finished job again changes nothing.
    before = (tmp_path / "a" / "run" / "metrics.jsonl").read_text()
    d = _trainer(tmp_path / "a", **kw)
    d.train()
    assert d.step == 4 and (tmp_path / "a" / "run" / "metrics.jsonl").read_text() == before


# ---------------------------------------------------------------------------- config and CLI


def test_config_overrides_and_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("num_iterations: 3\nrewards: [tse, accuracy]\nlearning_rate: 1.0e-5\n")
    c = config.load_config(f, ["--learning_rate", "1e-4", "--rewards=accuracy,confidence", "--beta", "0",
                               "--scale_rewards", "yes", "--save_total_limit", "null", "--cfg_scale", "-0"])
    assert c.num_iterations == 3 and c.learning_rate == 1e-4 and c.rewards == ["accuracy", "confidence"]
    assert c.beta == 0.0 and c.scale_rewards is True and c.save_total_limit is None
    bad = {
        ("--lerning_rate", "1"): "unknown key 'lerning_rate'.*Did you mean learning_rate",
        ("--max_steps",): "missing value",
        ("--max_steps", "ten"): "max_steps='ten': expected an integer",
        ("--max_steps", "2.5"): "expected an integer",
        ("--scale_rewards", "maybe"): "expected true or false",
        ("max_steps", "3"): "expected --key value",
        ("--beta", "1", "--beta", "2"): "given twice",
        ("--rewards", "tse,vibes"): "unknown value.*'vibes'",
        ("--gen_length", "100"): "multiple of block_length",
        ("--steps", "100"): "multiple of the number of blocks",
        ("--save_steps", "5"): "multiple of num_iterations",
        ("--temperature", "0"): "temperature > 0",
        ("--num_generations", "1"): "at least 2",
        ("--pretrained", "null"): "pretrained cannot be null",
    }
    for argv, msg in bad.items():
        with pytest.raises(config.ConfigError, match=msg):
            config.load_config(None, list(argv))
    f.write_text("num_iteratons: 3\n")
    with pytest.raises(config.ConfigError, match="c.yaml: unknown key 'num_iteratons'"):
        config.load_config(f)
    f.write_text("max_steps: true\n")
    with pytest.raises(config.ConfigError, match="max_steps=True: expected an integer"):
        config.load_config(f)


def test_answer_task_aliases_and_key_suggestions(tmp_path):
    # The evaluation's alias works for training too, from YAML, the command line and code.
    f = tmp_path / "c.yaml"
    f.write_text("answer_task: math\n")
    assert config.load_config(f).task == "math500"
    assert config.load_config(None, ["--answer_task", "math"]).answer_task == "math500"
    assert config.TCRConfig(answer_task="math").validate().task == "math500"
    with pytest.raises(config.ConfigError, match="answer_task='mmlu': expected one of gsm8k"):
        config.load_config(None, ["--answer_task", "mmlu"])
    f.write_text("num_iteratons: 3\n")
    with pytest.raises(config.ConfigError, match=r"c.yaml: unknown key 'num_iteratons'\. Did you mean num_iterations"):
        config.load_config(f)
    with pytest.raises(config.ConfigError, match="unknown key 'gen_lenght'. Did you mean gen_length"):
        config.parse_overrides(["--gen_lenght", "8"])


def test_single_key_rules_hold_for_configs_built_in_code():
    for kw, msg in [(dict(lora_r=0), "lora_r=0: expected an integer >= 1"),
                    (dict(tse_skip=1.0), r"tse_skip=1.0: expected a number in \[0, 1\)"),
                    (dict(epsilon=0.0), "epsilon=0.0: expected a number > 0"),
                    (dict(rewards=["tse", "vibes"]), "unknown value.*'vibes'"),
                    (dict(dtype="int8"), "dtype='int8': expected one of auto, float32")]:
        with pytest.raises(config.ConfigError, match=msg):
            config.TCRConfig(**kw).validate()
    c = config.TCRConfig(lora_alpha=8, dtype="float64").validate()
    assert isinstance(c.lora_alpha, float) and c.sampler == config.TCRConfig().sampler
    assert config.load_config(None, ["--gen_prefix", ""]).prefix == ""  # "" is a string here, not null


def test_cli_reports_config_errors(tmp_path, capsys):
    from lm_eval_temporal.cli import main

    f = tmp_path / "c.yaml"
    f.write_text("max_steps: 1\n")
    assert main(["tcr", "--config", str(f), "--max_stepz", "2"]) == 2
    assert "unknown key 'max_stepz'" in capsys.readouterr().err
    assert main(["tcr", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_trains_the_example_on_the_testbed_and_prints_the_study_evaluation(tmp_path, capsys):
    """The example config's command (cut to one optimiser step) trains on the shipped testbed and
    prints an evaluation command with the testbed's evaluation settings, which lm-eval parses."""
    from lm_eval.utils import simple_parse_args_string

    from lm_eval_temporal.cli import main
    from lm_eval_temporal.tiny import TESTBED_DIR, TESTBED_EVAL

    example = Path(__file__).resolve().parent.parent / "examples" / "tcr_tiny_cpu.yaml"
    out = tmp_path / "tcr"
    assert main(["tcr", "--config", str(example), "--output_dir", str(out), "--max_steps", "1", "--num_iterations",
                 "1", "--save_steps", "0", "--prompts_per_batch", "1", "--num_generations", "2",
                 "--progress", "false"]) == 0
    printed = capsys.readouterr().out
    assert f"adapter saved to {out}" in printed
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(TESTBED_DIR)
    hint = next(x for x in printed.splitlines() if x.startswith("evaluate with: "))
    args = simple_parse_args_string(hint.split("--model_args ")[1].split()[0])
    assert args == {"pretrained": "embedded:testbed", "peft": str(out), **TESTBED_EVAL}


@pytest.mark.parametrize("name", ["tcr_tiny_cpu.yaml", "tcr_llada8b.yaml"])
def test_example_configs_are_valid(name):
    path = Path(__file__).resolve().parent.parent / "examples" / name
    c = config.load_config(path)
    if name == "tcr_llada8b.yaml":  # the paper's hyperparameters
        assert (c.num_generations, c.temperature, c.gen_length, c.steps, c.block_length) == (6, 0.9, 256, 128, 32)
        assert (c.num_iterations, c.epsilon, c.beta, c.lora_r, c.lora_alpha, c.lora_dropout) == (12, 0.5, 0.04, 128, 64, 0.05)
        assert (c.learning_rate, c.adam_beta1, c.adam_beta2, c.weight_decay, c.max_grad_norm) == (3e-6, 0.9, 0.99, 0.1, 0.2)
    else:
        assert c.pretrained == "embedded:testbed" and c.cpu


# ---------------------------------------------------------------------------- data


def test_prompt_order_and_arith_problems():
    from lm_eval_temporal.tcr.data import PromptOrder, load_problems
    from lm_eval_temporal.tiny import arith

    o = PromptOrder(5, seed=1)
    first = o.indices(0, 5)
    assert sorted(first) == list(range(5)) and o.indices(0, 7)[:5] == first
    assert PromptOrder(5, seed=1).indices(3, 4) == o.indices(3, 4)  # a pure function of position
    probs = load_problems("arith_chain", limit=50)
    assert len(probs) == 50 and not any(arith.is_eval_question(p.question) for p in probs)
    assert probs[0].user_prompt == arith.prompt_text(probs[0].question)


def test_local_train_splits(monkeypatch):
    from offline_data import DATA, DATA_ENV, data_file

    data_file("gsm8k/train.jsonl")
    data_file("svamp/train.jsonl")
    from lm_eval_temporal.tcr.data import format_prompt, load_problems

    monkeypatch.setenv(DATA_ENV, str(DATA))
    g = load_problems("gsm8k", limit=3)
    assert g[0].question.startswith("Natalia") and str(g[0].gold) in ("72", "72.0")
    assert g[0].user_prompt.endswith("\n\n" + g[0].question) and "\\boxed{}" in g[0].user_prompt
    s = load_problems("svamp", limit=2)
    assert len(s) == 2 and s[0].user_prompt.endswith(s[0].question)
    assert format_prompt("Q", None, chat_template=False, gen_prefix="<reasoning>") == "Q <reasoning>"


def test_train_and_test_splits_share_one_loader(tmp_path):
    from lm_eval_temporal.tasks import raw_rows
    from lm_eval_temporal.tcr.data import load_problems

    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "q1", "answer": "x\\n#### 7"}\n\n')
    assert raw_rows("gsm8k", "train", str(tmp_path)) == [{"question": "q1", "answer": "x\n#### 7"}]
    assert [p.question for p in load_problems("gsm8k", data_dir=str(tmp_path))] == ["q1"]
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*expected file: svamp/train.jsonl"):
        load_problems("svamp", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no train split for 'math500'"):
        raw_rows("math500", "train", str(tmp_path))

