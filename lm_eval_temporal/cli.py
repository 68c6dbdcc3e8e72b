"""lm-eval-temporal command line: tcr (Temporal Consistency Reinforcement), plot (trajectory
figures), fetch-data (the offline benchmark folder), verify (re-check a run's files),
leaderboard (one table of many runs) and revote (other votes without a model)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lm-eval-temporal", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "tcr",
        help="Temporal Consistency Reinforcement (diffu-GRPO with a negative-TSE reward)",
        description="Train a LoRA adapter with TCR. Any config key can be overridden as --key value.",
    )
    t.add_argument("--config", required=True, help="YAML config (see examples/tcr_tiny_cpu.yaml)")
    t.add_argument("--output_dir", help="where the adapter, checkpoints and metrics go")
    g = sub.add_parser("plot", help="plots and an HTML report from a trajectory_path JSON Lines file")
    g.add_argument("file", nargs="+", help="JSON Lines written by --model_args trajectory_path=... (several files or a glob)")
    g.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    g.add_argument("--samples", type=int, default=12, help="per-sample timelines to draw (default 12)")
    f = sub.add_parser(
        "fetch-data",
        help="download the benchmark files into the folder LM_EVAL_TEMPORAL_DATA reads (needs the network)",
        description="Download every benchmark split the tasks use from its usual source (the Hugging Face Hub; "
                    "d1's Countdown file on GitHub) into OUT_DIR, laid out as LM_EVAL_TEMPORAL_DATA expects. "
                    "Copy the folder to an air-gapped machine and set LM_EVAL_TEMPORAL_DATA=OUT_DIR there.",
    )
    f.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if missing)")
    f.add_argument("--overwrite", action="store_true", help="download files that are already there again")
    lb = sub.add_parser(
        "leaderboard",
        help="one table (Markdown, CSV, sortable HTML) of many lm-eval runs: rows are models, columns tasks",
        description="Aggregate lm-eval output folders (results_*.json, searched recursively) into OUT/leaderboard.md, "
                    "leaderboard.csv and leaderboard.html. Each run is checked with `lm-eval-temporal verify`; "
                    "unverified rows carry a badge saying why. Missing values show as an em dash.",
    )
    lb.add_argument("dirs", nargs="+", metavar="DIR", help="lm-eval --output_path folders (or results files)")
    lb.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    lb.add_argument("--allow-limit", action="store_true", help="verify smoke runs made with --limit as complete")
    v = sub.add_parser("verify", help="re-check a run's results from its samples, record and file hashes (a CI gate)",
                       description="Re-derive every reported metric from the samples files, check the run record is "
                                   "complete, one protocol across tasks, full document sets and the sidecar's file "
                                   "hashes. Exit status 1 with one line per problem.")
    v.add_argument("results_dir", metavar="RESULTS_DIR", help="lm_eval --output_path folder (searched recursively)")
    v.add_argument("--allow-limit", action="store_true", help="accept runs that evaluated part of a task (--limit)")
    v.add_argument("--json", action="store_true", help="print the report as JSON (for bots)")
    _revote_parser(sub)
    return p


def leaderboard_from_cli(dirs: list[str], output: str, allow_limit: bool) -> int:
    """``lm-eval-temporal leaderboard DIR... -o OUT [--allow-limit]``; returns the exit code."""
    from lm_eval_temporal.leaderboard import LeaderboardError, leaderboard

    try:
        written = leaderboard(dirs, output, allow_limit=allow_limit)
    except (LeaderboardError, OSError) as exc:
        print(f"lm-eval-temporal leaderboard: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def verify_from_cli(results_dir: str, allow_limit: bool, as_json: bool) -> int:
    """``lm-eval-temporal verify RESULTS_DIR [--allow-limit] [--json]``; 0 when every check passes."""
    import json

    from lm_eval_temporal.verify import verify_run

    report = verify_run(results_dir, allow_limit=allow_limit)
    if as_json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        for line in report.problems:
            print(line)
        if report.ok:
            print(f"ok: {len(report.runs)} run(s), {sum(len(r.tasks) for r in report.runs)} task(s) verified")
    return 0 if report.ok else 1


def _revote_parser(sub) -> None:
    from lm_eval_temporal.config import CLUSTERS, PROTOCOLS, VOTES

    r = sub.add_parser(
        "revote",
        help="recompute votes and metrics from recorded per-step answers (no model)",
        description="Re-vote a run from its recorded per-step answers, with the live run's vote function, and print "
                    "each task's metrics (exact_match of the new vote, final/ever-pass, vote gain, TSE, tpf).",
    )
    r.add_argument("file", nargs="+", help="trajectory_path files, lm-eval samples_<task>_*.jsonl files, or folders "
                                           "holding samples files")
    r.add_argument("--vote", required=True, choices=VOTES)
    r.add_argument("--alpha", help="exp weights' rate (default 5)")
    r.add_argument("--cluster", choices=CLUSTERS, help="answer clusters (default equivalence)")
    r.add_argument("--protocol", choices=PROTOCOLS,
                   help="answer protocol (default: each record's own; another one needs trajectory_text=true)")
    r.add_argument("--tse-alpha", dest="tse_alpha", help="TSE's exp rate (default 12.8)")
    r.add_argument("--tse-skip", dest="tse_skip", help="share of early steps TSE drops (default 0.5)")
    r.add_argument("--gate-window", dest="gate_window", help="vote=gated: steps the final answer must hold (default 8)")
    r.add_argument("--gate-share", dest="gate_share", help="vote=gated: their weight share (default 0.9)")
    r.add_argument("--sweep", metavar="KEY=V1,V2,...", help="one row per value, e.g. alpha=0,1,2,5,10")
    r.add_argument("-o", "--output", help="write the re-voted records here (trajectory JSON Lines)")
    r.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="the report as JSON: to PATH, or alone to stdout instead of the table")


def fetch_data_from_cli(out_dir: str, overwrite: bool) -> int:
    """``lm-eval-temporal fetch-data OUT_DIR [--overwrite]``; returns the exit code."""
    from lm_eval_temporal.errors import DataUnavailable
    from lm_eval_temporal.tasks import DATA_ENV, fetch_data

    try:
        done = fetch_data(out_dir, overwrite=overwrite)
    except (DataUnavailable, OSError) as exc:
        print(f"lm-eval-temporal fetch-data: error: {exc}", file=sys.stderr)
        return 1
    for path, written in done:
        print(f"{path}{'' if written else ' (already there, kept)'}")
    print(f"offline: export {DATA_ENV}={Path(out_dir).expanduser().resolve()}")
    return 0


def _eval_hint(cfg, out: Path) -> str:
    from lm_eval_temporal.options import EMBEDDED
    from lm_eval_temporal.tiny import TESTBED_DIR, TESTBED_EVAL, shipped_dir

    task = {"arith_chain": "arith_chain", "gsm8k": "gsm8k_temporal", "svamp": "svamp"}[cfg.dataset]
    args = f"pretrained={cfg.pretrained},peft={out}" if cfg.pretrained != EMBEDDED else f"peft={out}"
    if shipped_dir(cfg.pretrained) == TESTBED_DIR:  # evaluated sampled, as in docs/tcr_evidence.md
        args += "".join(f",{k}={v}" for k, v in TESTBED_EVAL.items())
    chat = " --apply_chat_template" if cfg.chat_template else ""
    return f"lm_eval --model llada_temporal --model_args {args} --tasks {task}{chat}"


def run_from_cli(config_path: str, output_dir: str | None, overrides: list[str]) -> int:
    """``lm-eval-temporal tcr --config FILE [--output_dir DIR] [--key value ...]``; returns the exit code."""
    from lm_eval_temporal.tcr.config import ConfigError, load_config

    argv = list(overrides) + (["--output_dir", output_dir] if output_dir else [])
    try:
        cfg = load_config(config_path, argv)
    except ConfigError as exc:
        print(f"lm-eval-temporal tcr: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from lm_eval_temporal.tcr.trainer import TCRTrainer

    trainer = TCRTrainer(cfg)
    out = trainer.train()
    if trainer.accelerator.is_main_process:
        print(f"adapter saved to {out}")
        print(f"evaluate with: {_eval_hint(cfg, out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    if args.command == "tcr":
        return run_from_cli(args.config, args.output_dir, extra)
    if extra:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "fetch-data":
        return fetch_data_from_cli(args.out_dir, args.overwrite)
    if args.command == "leaderboard":
        return leaderboard_from_cli(args.dirs, args.output, args.allow_limit)
    if args.command == "verify":
        return verify_from_cli(args.results_dir, args.allow_limit, args.json)
    if args.command == "revote":
        from lm_eval_temporal.revote import revote_from_cli

        return revote_from_cli(args)
    from lm_eval_temporal.plot import plot_trajectories

    try:
        written = plot_trajectories(args.file, args.output, samples=args.samples)
    except (OSError, ImportError, ValueError) as exc:  # TrajectoryError is a ValueError
        _parser().exit(2, f"lm-eval-temporal plot: error: {exc}\n")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
