"""The ``depth-diffusion-ros`` command.

Each subcommand lives in its own module under ``depth_diffusion_ros.tools`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``depth-diffusion-ros replay`` never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("depth_diffusion_ros.tools.demo", "run the main job on the embedded default data"),
    "kitti-to-bag": ("depth_diffusion_ros.tools.kitti_to_bag", "convert KITTI raw/object folders to rosbag2"),
    "replay": ("depth_diffusion_ros.tools.replay", "replay a bag through the nodes and score the output"),
    "export": ("depth_diffusion_ros.tools.export", "export a torch checkpoint to ONNX (with parity check)"),
    "build-engine": ("depth_diffusion_ros.tools.build_engine", "build a TensorRT engine from ONNX (cached)"),
    "benchmark": ("depth_diffusion_ros.tools.benchmark", "run the latency benchmarks and print a table"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Parser with every subcommand listed; only ``chosen``'s module is imported for its options."""
    parser = argparse.ArgumentParser(prog="depth-diffusion-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
