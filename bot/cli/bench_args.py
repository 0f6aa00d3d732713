"""The options of ``sdbot bench throughput`` and ``sdbot bench gpu``, kept here so that no
command imports the ``bench`` package until a benchmark runs."""

from __future__ import annotations

import argparse

GPU_PROMPT = "a red circle on a blue background, studio photograph, detailed"
THROUGHPUT_GUILDS = 4


def add_throughput_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=16, help="jobs submitted at once")
    parser.add_argument("--variants", type=int, default=4, help="images per job")
    parser.add_argument("--steps", type=int, help="default: the model's")
    parser.add_argument(
        "--model", help="a name in the model list, or a model folder or file (default: the default)"
    )
    parser.add_argument(
        "--guilds",
        type=int,
        help=f"the jobs come from this many (default: {THROUGHPUT_GUILDS}, at most --jobs)",
    )
    parser.add_argument("--json", action="store_true")


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shapes", default="sd15,sdxl", help="comma-separated: sd15, sdxl (default: both)"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--size", type=int, help="side in px (default: 512 for sd15, 1024 for sdxl; 64 --tiny)"
    )
    parser.add_argument("--variants", type=int, default=4, help="images a call (1 to 4)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each, after a warm-up")
    parser.add_argument(
        "--fast",
        action="append",
        metavar="SWITCHES",
        help='a fast-path setting to run the path under, as SDBOT_FAST_PATH ("" for none, '
        '"channels_last,fuse_qkv", "compile"); repeat it to compare (default: SDBOT_FAST_PATH)',
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's dense fp16 peak (default: a table by CUDA device name; none on CPU)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the same architectures with widths / 5 and fewer layers, at 64 px (for a CPU)",
    )
    parser.add_argument("--prompt", default=GPU_PROMPT)
    parser.add_argument("--json", action="store_true")


def add_ops_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs", type=int, help="finished jobs for retention, as many for forget (default 20000)"
    )
    parser.add_argument(
        "--member-jobs", type=int, help="the forgotten member's jobs among them (default 2000)"
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="an empty PostgreSQL database (default: scratch SQLite)"
    )
    parser.add_argument(
        "--redis-url", help="the Redis /readyz pings (default: SDBOT_REDIS_URL; none: no check)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts everywhere (500 jobs, 20 scrapes)"
    )
    parser.add_argument("--json", action="store_true")
