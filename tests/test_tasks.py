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
