"""DiffusionDepth run-time table: torch eager vs ONNX Runtime (step form and unrolled form).

Usage: ``python benchmarks/bench_runtime.py [--quick] [--repeats N] [--threads N] [--json out.json]``
(the same as ``depth-diffusion-ros benchmark``). Prints one Markdown table: ms per frame for
1216x352 (KITTI) and 640x480 (NYU) at 1, 5, 10, 20 DDIM steps, the speed-up over torch, GMAC per
frame, the share of this CPU's fp32 peak reached and the peak RSS of each runtime's process.
See depth_diffusion_ros/tools/benchmark.py for the method.
"""
from __future__ import annotations

import argparse
import sys

from depth_diffusion_ros.tools import benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchmark.add_arguments(parser)
    return benchmark.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
