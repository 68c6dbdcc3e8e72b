#!/usr/bin/env bash
# The steps of the leaderboard CI example (examples/ci/leaderboard.yml runs this file, and
# tests/test_ci_example.py runs it on CPU): evaluate, verify, tabulate.
#   examples/ci/leaderboard.sh OUT [MODEL_ARGS]
# OUT/run holds the submission (lm-eval's results and samples, the run-record sidecar and the
# trajectory file); OUT/board the leaderboard (Markdown, CSV, HTML). Any failed step fails CI.
set -euo pipefail
out="${1:?usage: leaderboard.sh OUT [MODEL_ARGS]}"
model_args="${2:-pretrained=embedded}"
mkdir -p "$out/run"
lm_eval --model dllm_temporal --model_args "$model_args,trajectory_path=$out/run/trajectory.jsonl" \
  --tasks arith_chain --batch_size 32 --log_samples --output_path "$out/run"
lm-eval-temporal verify "$out/run"
lm-eval-temporal leaderboard "$out/run" -o "$out/board"
