from lm_eval_temporal import trace


def test_run_length_round_trip():
    answers = ["1", "1", None, None, "2", "1"]
    runs = trace.run_length(answers)
    assert runs == [["1", 2], [None, 2], ["2", 1], ["1", 1]]
    assert trace.expand_runs(runs) == answers


def test_attach_split_round_trip_keeps_text_exactly():
    text = "The answer is 18.\n#### 18 <|temporal_trace|> in text is fine"
    summary = {"final": "18", "answers": [["18", 3]], "tse": 0.0}
    out = trace.attach(text, summary)
    assert trace.split(out) == (text, summary)


def test_split_without_trace_or_with_garbage():
    assert trace.split("#### 4") == ("#### 4", None)
    bad = "x" + trace.MARKER + "{not json"
    assert trace.split(bad) == (bad, None)
