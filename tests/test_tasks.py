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
    stopped = TemporalRecord("gsm8k", 8, ["7", "5", "5", "5"], "5", "5", 3, "exp", 0.2, tokens=6, nfe=4)  # 4 of 8 steps
    out = process_results(doc, [trace.attach("#### 5", stopped)])
    assert out == {"exact_match": 1.0, "final_pass": 1.0, "ever_pass": 1.0, "tse": 0.2, "steps_saved": 0.5,
                   "nfe": 4.0, "tpf": (6, 4)}
    assert math.isnan(process_results(doc, ["#### 5"])["steps_saved"])  # other backends: no trace
    # Parallel decoding: the row's horizon is its own 2 steps; saved against the schedule's 8
    # (and negative where a row took more steps than the schedule).
    for ran, saved in ((2, 0.75), (12, -0.5)):
        fast = TemporalRecord("gsm8k", ran, ["5"] * ran, "5", "5", ran - 1, "exp", 0.0, schedule_steps=8)
        assert process_results(doc, [trace.attach("#### 5", fast)])["steps_saved"] == saved


def test_cli_help_is_plain_text(capsys):
    import pytest

    from lm_eval_temporal.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


def _fake_hub(monkeypatch, rows_of):
    """``datasets.load_dataset`` answering from ``rows_of(source)`` (no network): source is
    (path, config, split) for a Hub dataset, or the URL of a JSON file. Returns the calls."""
    import datasets

    calls = []

    def load_dataset(path, name=None, split=None, data_files=None, **_):
        source = data_files["test"] if path == "json" else (path, name, split)
        calls.append(source)
        return datasets.Dataset.from_list(rows_of(source))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_fetch_data_builds_the_folder_the_offline_loaders_read(tmp_path, monkeypatch, capsys):
    from lm_eval_temporal import cli, tasks

    rows = {
        ("openai/gsm8k", "main", "test"): [{"question": "test q", "answer": "x\n#### 3"}],
        ("openai/gsm8k", "main", "train"): [{"question": "train q", "answer": "y\n#### 4"}],
        ("ChilleD/SVAMP", None, "test"): [{"Body": "Tom has 3.", "Question": "How many?", "Answer": "3",
                                           "question_concat": "Tom has 3. How many?"}],
        ("ChilleD/SVAMP", None, "train"): [{"Body": "B", "Question": "Q", "Answer": "1", "question_concat": "B Q"}],
        ("HuggingFaceH4/MATH-500", None, "test"): [{"problem": "1+1?", "answer": "\\frac{1}{2}", "level": 1}],
        tasks.COUNTDOWN_URL: [{"input": "30,100,93", "output": "23"}],
    }
    calls = _fake_hub(monkeypatch, rows.__getitem__)
    monkeypatch.delenv(tasks.DATA_ENV, raising=False)
    out = tmp_path / "data"
    assert cli.main(["fetch-data", str(out)]) == 0
    assert sorted(calls, key=str) == sorted(rows, key=str)
    printed = capsys.readouterr().out
    assert f"{tasks.DATA_ENV}={out}" in printed
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(tasks.LOCAL_FILES.values())

    # What the package reads offline is exactly what the Hub served.
    monkeypatch.setenv(tasks.DATA_ENV, str(out))
    assert tasks.load_gsm8k()["test"][0]["question"] == "test q"
    assert tasks.load_svamp()["test"][0]["question"] == "Tom has 3. How many?"
    assert tasks.load_math500()["test"][0]["gold"] == '"\\\\frac{1}{2}"'
    assert tasks.load_countdown()["test"][0]["question"] == "Numbers: [30, 100, 93]\nTarget: 23"
    assert tasks.offline_mirror("openai/gsm8k", "main")["train"][0] == {"question": "train q", "answer": "y\n#### 4"}
    assert tasks.raw_rows("svamp", "train") == rows["ChilleD/SVAMP", None, "train"]

    # A second run keeps what is there (an interrupted download resumes) unless told otherwise.
    calls.clear()
    assert cli.main(["fetch-data", str(out)]) == 0
    assert calls == [] and "already there, kept" in capsys.readouterr().out
    assert cli.main(["fetch-data", str(out), "--overwrite"]) == 0 and len(calls) == len(rows)


def test_fetch_data_failure_leaves_no_partial_file_and_names_the_cause(tmp_path, monkeypatch, capsys):
    from lm_eval_temporal import cli, tasks

    def rows_of(source):
        if source[0] == "ChilleD/SVAMP":
            raise ConnectionError("Couldn't reach 'ChilleD/SVAMP' on the Hub")
        return [{"question": "q", "answer": "#### 1"}]

    _fake_hub(monkeypatch, rows_of)
    assert cli.main(["fetch-data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "could not load the svamp test split" in err and "Couldn't reach 'ChilleD/SVAMP'" in err
    assert "fetch-data needs a machine that reaches the Hugging Face Hub" in err
    assert (tmp_path / "gsm8k" / "test.jsonl").is_file() and not (tmp_path / "svamp").exists()


def test_fetch_data_writes_the_offline_copies_byte_for_byte(tmp_path, monkeypatch):
    """Served the rows of the reference offline folder, fetch-data writes the same bytes."""
    from offline_data import DATA, data_file

    from lm_eval_temporal import tasks

    for rel in tasks.LOCAL_FILES.values():
        data_file(rel)
    key_of = {tasks.HUB.get(key, tasks.COUNTDOWN_URL): key for key in tasks.LOCAL_FILES}
    _fake_hub(monkeypatch, lambda source: tasks.raw_rows(*key_of[source], data_dir=str(DATA)))
    for path, written in tasks.fetch_data(tmp_path):
        assert written and path.read_bytes() == (DATA / path.relative_to(tmp_path)).read_bytes(), path


def test_builtin_gsm8k_hub_failure_names_the_offline_variable():
    from lm_eval_temporal.errors import DataUnavailable, UserError
    from lm_eval_temporal.tasks import DATA_ENV, hub_failure

    err = hub_failure("openai/gsm8k", "main", ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub"))
    assert isinstance(err, DataUnavailable) and isinstance(err, RuntimeError) and isinstance(err, UserError)
    assert DATA_ENV in str(err) and "fetch-data" in str(err) and "Couldn't reach" in str(err)
    assert "gsm8k/test.jsonl" in str(err)
    assert hub_failure("some/other", None, ConnectionError("x")) is None  # lm-eval's own error stands
