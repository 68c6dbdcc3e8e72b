"""Our task configs' prompts are the paper's, character for character."""

from lm_eval_temporal.tasks import SYSTEM_PROMPTS

_FORMAT = ("Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n"
           "\\boxed{...}\n</answer>")


def test_the_four_prompts_are_the_official_ones():
    assert SYSTEM_PROMPTS["gsm8k"] == (
        "You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final "
        "answer in a \\boxed{}. \nRespond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
        "<answer>\n\\boxed{...}\n</answer>")
    assert SYSTEM_PROMPTS["svamp"] == SYSTEM_PROMPTS["gsm8k"]
    # MATH500: no space before the first newline; ends with a stray quote, a space and a newline.
    assert SYSTEM_PROMPTS["math500"] == (
        "You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final "
        "answer in a \\boxed{}.\nRespond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
        "<answer>\n\\boxed{...}\n</answer>\" \n")
    assert SYSTEM_PROMPTS["math500"].endswith('</answer>" \n')
    assert SYSTEM_PROMPTS["countdown"] == (
        "Using only the provided numbers, create an arithmetic expression that evaluates to exactly the provided "
        "target number. You may use the operations +, -, *, and / as needed, but each number must be used exactly "
        "once. Think step-by-step. After reasoning, provide only your final expression inside \\boxed{} tags "
        "without including an equals sign or the target number. For example: \\boxed{a + b * c}" + _FORMAT)


def test_builtin_gsm8k_reads_the_offline_folder(tmp_path, monkeypatch):
    import json

    import pytest

    from lm_eval_temporal.tasks import DATA_ENV, offline_mirror

    monkeypatch.delenv(DATA_ENV, raising=False)
    assert offline_mirror("openai/gsm8k", "main") is None  # unset: the Hub, as lm-eval does
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert offline_mirror("some/other", None) is None  # not a dataset the folder mirrors
    with pytest.raises(FileNotFoundError, match=r"LM_EVAL_TEMPORAL_DATA=.*gsm8k/(test|train)\.jsonl does not exist.*gsm8k_temporal"):
        offline_mirror("openai/gsm8k", "main")
    (tmp_path / "gsm8k").mkdir()
    for split in ("train", "test"):
        row = {"question": f"{split} q", "answer": "x\n#### 3"}
        (tmp_path / "gsm8k" / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
    ds = offline_mirror("openai/gsm8k", "main")
    assert sorted(ds) == ["test", "train"] and ds["test"][0] == {"question": "test q", "answer": "x\n#### 3"}


def test_process_results_reports_forward_passes_saved():
    import json
    import math

    from lm_eval_temporal import trace
    from lm_eval_temporal.record import TemporalRecord
    from lm_eval_temporal.tasks import process_results

    doc = {"gold": json.dumps("5"), trace.TRACE_KEY: {"task": "gsm8k"}}
    stopped = TemporalRecord("gsm8k", 8, ["7", "5", "5", "5"], "5", "5", 3, "exp", 0.2)  # 4 of 8 steps run
    out = process_results(doc, [trace.attach("#### 5", stopped)])
    assert out == {"exact_match": 1.0, "final_pass": 1.0, "ever_pass": 1.0, "tse": 0.2, "steps_saved": 0.5}
    assert math.isnan(process_results(doc, ["#### 5"])["steps_saved"])  # other backends: no trace


def test_cli_help_is_plain_text(capsys):
    import pytest

    from lm_eval_temporal.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out
