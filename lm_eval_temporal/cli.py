"""``lm-eval-temporal`` command line: ``tcr`` (post-training) and ``plot`` (trajectory figures)."""

from __future__ import annotations

import argparse
import sys


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
    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    if args.command == "tcr":
        from lm_eval_temporal.tcr.trainer import run_from_cli

        return run_from_cli(args.config, args.output_dir, extra)
    if extra:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
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
