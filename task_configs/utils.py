# Thin glue: lm-eval's `!function utils.X` resolves names in this file.
from lm_eval_temporal.tasks import (  # noqa: F401
    load_arith_chain,
    load_countdown,
    load_gsm8k,
    load_math500,
    load_svamp,
    process_results,
    tokens_per_forward,
)
