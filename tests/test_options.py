"""--model_args validation: named errors before any model is loaded."""

import pytest

from lm_eval_temporal.options import BackendOptions, parse_options


def test_defaults_are_the_paper_vote_and_embedded_model():
    o = parse_options({})
    assert o == BackendOptions()
    assert (o.pretrained, o.vote, o.alpha, o.cluster, o.tse_alpha, o.tse_skip) == ("embedded", "exp", 5.0, "equivalence", 12.8, 0.5)


def test_string_values_are_typed():
    o = parse_options({"gen_length": "256", "steps": "128", "block_length": "32", "alpha": "2.5",
                       "trust_remote_code": "True", "vote": "linear", "answer_task": "math", "batch_size": "auto"})
    assert (o.gen_length, o.steps, o.block_length, o.alpha, o.trust_remote_code, o.vote, o.answer_task, o.batch_size) == (
        256, 128, 32, 2.5, True, "linear", "math500", 8)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"gen_lenght": 32}, "unknown model argument(s) for llada_temporal: gen_lenght"),
        ({"vote": "majority"}, "vote='majority': expected one of none, fixed, linear, exp"),
        ({"cluster": "fuzzy"}, "cluster='fuzzy': expected one of equivalence, exact"),
        ({"remasking": "lowest"}, "remasking='lowest': expected one of low_confidence, random"),
        ({"answer_task": "mmlu"}, "answer_task='mmlu'"),
        ({"steps": "0"}, "steps='0': expected an integer >= 1"),
        ({"gen_length": "12.5"}, "gen_length='12.5': expected an integer"),
        ({"alpha": "-1"}, "alpha='-1': expected a number >= 0.0"),
        ({"temperature": "nan"}, "temperature='nan': expected a finite number"),
        ({"trust_remote_code": "maybe"}, "trust_remote_code='maybe': expected true or false"),
        ({"tse_skip": "1"}, "tse_skip='1': expected a number in [0, 1)"),
        ({"dtype": "int8"}, "dtype='int8': expected one of auto, float32"),
        ({"gen_length": 100, "block_length": 32}, "gen_length must be a multiple of block_length"),
        ({"gen_length": 32, "steps": 64}, r"steps=64: expected 1 <= steps <= gen_length=32"),
        ({"gen_length": 64, "block_length": 16, "steps": 6}, "steps=6: expected a multiple of the number of blocks"),
    ],
)
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError) as e:
        parse_options(kwargs)
    assert fragment in str(e.value)


def test_unknown_argument_lists_accepted_ones():
    with pytest.raises(ValueError, match="Accepted: pretrained, revision, dtype"):
        parse_options({"foo": 1})


def test_early_stop_and_gated_vote_options():
    o = parse_options({})
    assert (o.early_stop, o.stop_window, o.stop_share, o.stop_gap, o.overlap) == ("none", 8, 0.9, (8.0, 5.0, 3.0), True)
    assert (o.gate_window, o.gate_share) == (8, 0.9)
    o = parse_options({"early_stop": "stable", "stop_window": "4", "stop_share": "0.75", "vote": "gated",
                       "gate_window": "6", "gate_share": "1", "overlap": "false"})
    assert (o.early_stop, o.stop_window, o.stop_share, o.vote, o.gate_window, o.gate_share, o.overlap) == (
        "stable", 4, 0.75, "gated", 6, 1.0, False)
    assert parse_options({"early_stop": "confidence", "stop_gap": "6"}).stop_gap == (6.0,)
    assert parse_options({"stop_gap": "7.5:5: 2.5"}).stop_gap == (7.5, 5.0, 2.5)
    assert parse_options({}).stop_min == 0.0 and parse_options({"stop_min": "0.5"}).stop_min == 0.5


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"early_stop": "stable:k=8"}, "early_stop='stable:k=8': expected one of none, stable, confidence"),
        ({"stop_window": "0"}, "stop_window='0': expected an integer >= 1"),
        ({"stop_share": "0"}, "stop_share='0': expected a number in (0, 1]"),
        ({"stop_share": "1.5"}, "stop_share='1.5': expected a number in (0, 1]"),
        ({"gate_share": "-0.1"}, "gate_share='-0.1': expected a number in (0, 1]"),
        ({"gate_window": "x"}, "gate_window='x': expected an integer"),
        ({"stop_gap": "8:5"}, "stop_gap='8:5': expected one number or three"),
        ({"stop_gap": "-1"}, "stop_gap='-1': expected a number >= 0.0"),
        ({"stop_min": "1"}, "stop_min='1': expected a number in [0, 1)"),
        ({"vote": "majority"}, "expected one of none, fixed, linear, exp, gated"),
    ],
)
def test_early_stop_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError, match=None) as e:
        parse_options(kwargs)
    assert fragment in str(e.value)


def test_misspelled_argument_gets_a_suggestion():
    with pytest.raises(ValueError) as e:
        parse_options({"gen_lenght": 32})
    assert "unknown model argument(s) for llada_temporal: gen_lenght. Did you mean gen_length?" in str(e.value)
    assert "Accepted: pretrained, revision, dtype" in str(e.value)
    with pytest.raises(ValueError, match="unknown model argument"):
        parse_options({"gen_lenght": ""})  # an empty value does not hide an unknown name


def test_special_cases_of_model_args():
    assert parse_options({"batch_size": "auto:4"}).batch_size == 8
    assert parse_options({"max_batch_size": "64"}).max_batch_size == 64
    o = parse_options({"gen_length": "", "steps": None, "vote": " none ", "answer_task": "MATH", "revision": "null"})
    assert (o.gen_length, o.steps, o.vote, o.answer_task, o.revision) == (None, None, "none", "math500", None)
    with pytest.raises(ValueError, match="pretrained='': expected a path, a hub id, 'embedded' or 'embedded:testbed'"):
        parse_options({"pretrained": ""})
    assert parse_options({"stop_gap": [8, 5, 3]}).stop_gap == (8.0, 5.0, 3.0)


def test_temporal_settings_come_as_one_object():
    from dataclasses import fields

    from lm_eval_temporal.config import TemporalConfig

    o = parse_options({"vote": "gated", "stop_gap": "6", "tse_skip": "0.25", "early_stop": "confidence"})
    t = o.temporal
    assert isinstance(t, TemporalConfig)
    assert (t.vote, t.stop_gap, t.tse_skip, t.early_stop, t.gap_thresholds) == ("gated", (6.0,), 0.25, "confidence",
                                                                                 (6.0, 6.0, 6.0))
    assert parse_options({}).temporal == TemporalConfig()
    # Shared settings are checked by the same rule in both classes.
    rules = {f.name: f.metadata for f in fields(TemporalConfig)}
    assert all(f.metadata == rules[f.name] for f in fields(o) if f.name in rules)


def test_dtype_tables_agree():
    from lm_eval_temporal.config import DTYPES
    from lm_eval_temporal.loading import DTYPES as TORCH_DTYPES, resolve_dtype
    from lm_eval_temporal.tcr.config import load_config

    assert set(TORCH_DTYPES) == set(DTYPES) - {"auto"}
    for name in DTYPES:
        assert parse_options({"dtype": name}).dtype == name
        assert load_config(None, ["--dtype", name]).dtype == name
        resolve_dtype(name)


def test_option_parsing_imports_neither_torch_nor_lm_eval():
    import subprocess
    import sys

    code = ("import sys, lm_eval_temporal.coerce, lm_eval_temporal.options, lm_eval_temporal.config, "
            "lm_eval_temporal.tcr.config; print(sorted(m for m in ('torch', 'lm_eval') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("value", [dict(parallel_threshold=1.5), dict(cfg_scale=-0.5), dict(remasking="topk")])
def test_a_field_rule_says_the_same_words_from_model_args_and_the_sampler(value):
    from lm_eval_temporal.config import SamplerConfig

    with pytest.raises(ValueError) as parsed:
        parse_options(value)
    with pytest.raises(ValueError) as built:
        SamplerConfig(gen_length=8, steps=4, block_length=4, **value).validate()
    assert str(parsed.value) == f"model argument {built.value}"


@pytest.mark.parametrize("value, message", [(dict(steps=4.0), "steps=4.0: expected an integer"),
                                            (dict(suppress_eos="no"), "suppress_eos='no': expected true or false"),
                                            (dict(temperature="0.5"), "temperature='0.5': expected a number")])
def test_a_config_built_in_code_is_not_converted(value, message):
    from lm_eval_temporal.config import SamplerConfig

    with pytest.raises(ValueError) as e:
        SamplerConfig(**{**dict(gen_length=8, steps=4, block_length=4), **value}).validate()
    assert str(e.value) == message


@pytest.mark.parametrize("combination", [dict(parallel_threshold=0.9, remasking="random"),
                                         dict(prefix_cache=True, cfg_scale=1.0),
                                         dict(prefix_cache=True, parallel_threshold=0.9)])
def test_a_combination_rule_says_the_same_words_from_model_args_and_the_sampler(combination):
    from lm_eval_temporal.config import SamplerConfig

    with pytest.raises(ValueError) as parsed:
        parse_options({k: str(v) for k, v in combination.items()})
    with pytest.raises(ValueError) as built:
        SamplerConfig(gen_length=8, steps=4, block_length=4, **combination).validate()
    assert str(parsed.value) == f"model arguments: {built.value}"


@pytest.mark.parametrize("policy", ["stable", "confidence"])
def test_early_stop_with_parallel_threshold_is_refused_in_the_pipelines_words(policy):
    """Early stop needs T before decoding; with parallel_threshold each row chooses its own."""
    from lm_eval_temporal import early_stop
    from lm_eval_temporal.config import SamplerConfig, TemporalConfig
    from lm_eval_temporal.errors import OptionError

    with pytest.raises(OptionError) as parsed:
        parse_options({"early_stop": policy, "parallel_threshold": "0.9"})
    sampler = SamplerConfig(gen_length=8, steps=4, block_length=4, parallel_threshold=0.9)
    with pytest.raises(ValueError) as built:
        early_stop.policy(TemporalConfig(early_stop=policy), sampler, None, ["gsm8k"], [[]])
    assert str(parsed.value) == f"model arguments: {built.value}" == (
        f"model arguments: early_stop={policy!r}: early_stop needs a fixed schedule: "
        "parallel_threshold lets each row choose its number of steps (use early_stop=none with it)")
    assert parse_options({"early_stop": "none", "parallel_threshold": "0.9"}).parallel_threshold == 0.9
    assert early_stop.policy(TemporalConfig(), sampler, None, ["gsm8k"], [[]]).callback is None


def test_horizon_is_the_fixed_schedule_or_the_steps_a_row_chose():
    from lm_eval_temporal.config import SamplerConfig, horizon
    from lm_eval_temporal.families.diffusion_gemma.settings import DiffusionGemmaSettings

    exact = SamplerConfig(gen_length=16, steps=8, block_length=8)
    assert exact.fixed_schedule and horizon(exact) == horizon(exact, 3) == 8  # an early-stopped row: still 8
    parallel = SamplerConfig(gen_length=16, steps=8, block_length=8, parallel_threshold=0.9)
    assert not parallel.fixed_schedule and (horizon(parallel, 3), horizon(parallel, 12)) == (3, 12)
    with pytest.raises(ValueError, match="SamplerConfig lets each row choose .* T is known only after decoding"):
        horizon(parallel)
    adaptive = DiffusionGemmaSettings(max_new_tokens=8, max_denoising_steps=6, t_min=0.0, t_max=1.0, entropy_bound=1.0,
                                      stability_threshold=2, confidence_threshold=0.9, canvas_length=8)
    assert horizon(adaptive, 4) == 4  # adaptive stopping: each row its own steps


def test_a_block_length_cut_to_a_short_task_is_reported_as_rounded():
    from lm_eval_temporal.options import resolve_sampler

    cfg, rounded = resolve_sampler(parse_options({"block_length": "32", "steps": "16"}), {"max_gen_toks": 16})
    assert (cfg.gen_length, cfg.block_length, cfg.steps) == (16, 16, 16)
    assert rounded == ["block_length 32 -> 16 (at most gen_length=16)"]
    # the paper's block of 32 is a default, not the user's: cutting it is not news
    assert resolve_sampler(parse_options({}), {"max_gen_toks": 16})[1] == []
