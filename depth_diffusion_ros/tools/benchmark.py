"""``depth-diffusion-ros benchmark``: DiffusionDepth run-time table (torch eager vs ONNX Runtime).

For each resolution (1216x352 KITTI, 640x480 NYU) and step count (1, 5, 10, 20) it measures
ms per frame of the completion pipeline on a real frame for

* ``torch``         — eager PyTorch (the torch backend) on the CPU;
* ``torch-cuda``    — the torch backend on the GPU (``cuda``) under float16 autocast; skipped
  with the reason where ``torch.cuda.is_available()`` is false;
* ``ort-step``      — ONNX Runtime, encoder + step + decoder graphs driven by the pipeline's loop;
* ``ort-unrolled``  — ONNX Runtime, the whole loop unrolled into one graph (one file per N);

plus the model's GMAC per frame (``models.flops``: conv/matmul MACs), the fraction of this CPU's
peak fp32 FMA throughput reached, and the peak resident memory of the process that ran it.
Every runtime runs in its own subprocess (``--worker``), so peak RSS is per runtime and the ONNX
Runtime rows really run without torch imported. Timings are the minimum over ``--repeats``
runs after one warm-up (the CI machine is shared, the minimum is the least disturbed run).

CPU peak estimate (stated in the output): cores x GHz x fp32 FLOPs/cycle, where FLOPs/cycle is
2 (FMA) x 8 lanes x 2 pipes = 32 for AVX2+FMA cores and AMD Zen 4 (AVX-512 executed as two
256-bit halves), 64 for Intel cores with AVX-512 (two 512-bit FMA ports), 8 without AVX;
GHz from ``lscpu`` (max MHz if listed, else BogoMIPS / 2 = the TSC rate).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

RESOLUTIONS = {"kitti": (352, 1216), "nyu": (480, 640)}
STEPS = (1, 5, 10, 20)
RUNTIMES = ("torch", "torch-cuda", "ort-step", "ort-unrolled")
#: the runtimes run by default (torch-cuda only where asked for: it needs a GPU)
DEFAULT_RUNTIMES = ("torch", "ort-step", "ort-unrolled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="KITTI size only, 1 and 5 steps, 1 repeat")
    parser.add_argument("--checkpoint", default="", help="DiffusionDepth checkpoint dir ('' = the shipped "
                        "default model if present, else the default config with random weights: same compute)")
    parser.add_argument("--resolutions", default="kitti,nyu",
                        help="comma list of kitti (1216x352), nyu (640x480) or WxH sizes (multiples of 32)")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="comma list of DDIM step counts")
    parser.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES),
                        help="comma list of " + ", ".join(RUNTIMES) + " (default: " + ",".join(DEFAULT_RUNTIMES) + ")")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per cell (min is reported)")
    parser.add_argument("--threads", type=int, default=0, help="threads per runtime (0 = all cores)")
    parser.add_argument("--work-dir", default="", help="where ONNX files go ('' = a temp dir)")
    parser.add_argument("--json", default="", help="also write the rows as JSON here")
    parser.add_argument("--data-dir", default="", help="shared data dir (real frames)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)


# ----------------------------------------------------------------------------- CPU peak
def cpu_peak_gflops() -> tuple[float, str]:
    """(peak fp32 GFLOP/s, the assumption in words) from lscpu (see module docstring)."""
    info: dict[str, str] = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                info[k.strip()] = v.strip()
    except OSError:
        pass
    flags = set(info.get("Flags", "").split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    vendor = info.get("Vendor ID", "")
    if "CPU max MHz" in info:
        ghz = float(info["CPU max MHz"]) / 1000.0
        ghz_src = "max MHz"
    elif "BogoMIPS" in info:
        ghz = float(info["BogoMIPS"]) / 2000.0
        ghz_src = "BogoMIPS/2"
    else:
        ghz, ghz_src = 2.0, "assumed"
    if "avx512f" in flags and "Intel" in vendor:
        fpc, isa = 64, "AVX-512 FMA x2 ports"
    elif "avx512f" in flags or ("avx2" in flags and "fma" in flags):
        fpc, isa = 32, "AVX2/AVX-512(2x256-bit) FMA x2 pipes"
    else:
        fpc, isa = 8, "SSE"
    peak = cores * ghz * fpc
    return peak, f"{cores} cores x {ghz:.2f} GHz ({ghz_src}) x {fpc} FLOP/cycle ({isa}) = {peak:.0f} GFLOP/s fp32"


def measured_sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """fp32 matrix-multiply throughput numpy's BLAS reaches here (best of ``repeats``): a
    practical ceiling next to the nominal peak (turbo clocks can exceed the base clock)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- worker
def _peak_rss_mb() -> float:
    """Peak RSS of this process in MiB: VmHWM (per address space; ru_maxrss would carry the
    parent's peak across fork/exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


def _worker(spec: dict) -> dict:
    """Run one runtime on one resolution for all step counts; returns {steps: ms, rss_mb}.

    Each cell times the whole completion pipeline on a real frame (padding, tensor layout, the
    DDIM loop, decoding), the path a node takes."""
    from depth_diffusion_ros.export.frames import frame_for_size
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    H, W = spec["height"], spec["width"]
    rgb, sparse = frame_for_size(spec["data_dir"], H, W)
    threads = int(spec["threads"])
    out: dict[str, Any] = {"ms": {}}
    model = None
    if spec["runtime"] in ("torch", "torch-cuda"):
        import torch

        if threads:
            torch.set_num_threads(threads)
        model = _load_model(spec).eval()
        if spec["runtime"] == "torch-cuda":
            model = model.to("cuda")
            out["device"] = torch.cuda.get_device_name(0)
    for n in spec["steps"]:
        if model is not None:
            from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend

            backend = TorchDiffusionDepthBackend(model=model, num_inference_steps=n,
                                                 fp16=spec["runtime"] == "torch-cuda")
        else:
            from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend

            form = "step" if spec["runtime"] == "ort-step" else "unrolled"
            backend = OnnxRuntimeDiffusionDepthBackend(spec["onnx_dir"], num_inference_steps=n, export_form=form,
                                                       intra_op_num_threads=threads, providers=["cpu"])
        pipeline = CompletionPipeline(backend)
        out["ms"][str(n)] = _time(lambda: pipeline(rgb, sparse), spec["repeats"])  # runs before the next n
    out["torch_imported"] = "torch" in sys.modules
    out["rss_mb"] = _peak_rss_mb()
    return out


def _load_model(spec: dict) -> Any:
    import torch

    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from depth_diffusion_ros.models.config import DiffusionDepthConfig
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    if spec.get("checkpoint"):
        return load_checkpoint(spec["checkpoint"], architecture="diffusion_depth")
    torch.manual_seed(0)
    return DiffusionDepth(DiffusionDepthConfig())


def _run_worker(spec: dict) -> dict:
    code = "import json,sys; from depth_diffusion_ros.tools.benchmark import _worker; " \
           "print('RESULT', json.dumps(_worker(json.loads(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"benchmark worker {spec['runtime']} failed:\n{proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------- main
def default_checkpoint() -> str:
    """The shipped default completion model's folder, or "" when its weights are not there."""
    from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT

    p = DEFAULT_COMPLETION_CHECKPOINT
    return str(p) if (p / "model.safetensors").is_file() else ""


def resolution(name: str) -> tuple[int, int]:
    """(H, W) of a --resolutions entry: ``kitti``, ``nyu`` or ``WxH``. Raises ValueError."""
    if name in RESOLUTIONS:
        return RESOLUTIONS[name]
    from depth_diffusion_ros.tools.onnx_cache import parse_frame_size

    w, h = parse_frame_size(name)
    return h, w


def unavailable(runtime: str) -> Optional[str]:
    """Why ``runtime`` cannot run on this machine, or None."""
    if runtime == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            return "torch.cuda.is_available() is false here (no CUDA GPU or a CPU-only torch)"
    return None


def default_data_dir() -> str:
    return os.environ.get("DDR_SHARED_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def run_benchmark(
    resolutions: list[str], steps: list[int], runtimes: list[str], repeats: int = 2, threads: int = 0,
    checkpoint: str = "", work_dir: Optional[str] = None, data_dir: str = "",
) -> tuple[list[dict], str]:
    """Export what the ONNX rows need, run every worker, return (rows, CPU-peak assumption)."""
    import torch

    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth
    from depth_diffusion_ros.models.flops import diffusion_depth_gmacs

    threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    torch.set_num_threads(threads)
    data_dir = data_dir or default_data_dir()
    spec_base = {"checkpoint": checkpoint, "threads": threads, "repeats": repeats, "data_dir": data_dir}
    model = _load_model(spec_base).eval()
    peak, assumption = cpu_peak_gflops()
    assumption += f"; numpy sgemm reaches {measured_sgemm_gflops():.0f} GFLOP/s here"
    rows = []
    tmp = tempfile.TemporaryDirectory() if not work_dir else None
    root = Path(work_dir or tmp.name)
    try:
        for res in resolutions:
            H, W = resolution(res)
            onnx_dir = root / f"{res}_{W}x{H}"
            forms = [f for f, r in (("step", "ort-step"), ("unrolled", "ort-unrolled")) if r in runtimes]
            if "step" in forms:
                export_diffusion_depth(model, onnx_dir, H, W, forms=("step",), check=False)
            if "unrolled" in forms:
                for n in steps:
                    export_diffusion_depth(model, onnx_dir, H, W, forms=("unrolled",), num_inference_steps=n, check=False)
            g = diffusion_depth_gmacs(model, H, W)
            for rt in runtimes:
                result = _run_worker(dict(spec_base, runtime=rt, height=H, width=W, steps=steps, onnx_dir=str(onnx_dir)))
                for n in steps:
                    gmac = g["encode_condition"] + n * g["denoise_step"] + g["decode"]
                    ms = result["ms"][str(n)]
                    on_gpu = rt == "torch-cuda"  # the CPU peak says nothing of a GPU row
                    rows.append({
                        "resolution": f"{W}x{H}", "runtime": rt, "steps": n, "ms": ms, "gmac": gmac,
                        "gflops": 2 * gmac / (ms / 1000.0),
                        "peak_pct": None if on_gpu else 100 * 2 * gmac / (ms / 1000.0) / peak,
                        "rss_mb": result["rss_mb"], "torch_imported": result["torch_imported"],
                        "device": result.get("device", "cpu"),
                    })
    finally:
        if tmp is not None:
            tmp.cleanup()
    return rows, assumption


def format_table(rows: list[dict], assumption: str) -> str:
    """One Markdown table plus the speed-up of each ONNX row over torch eager."""
    torch_ms = {(r["resolution"], r["steps"]): r["ms"] for r in rows if r["runtime"] == "torch"}
    lines = [
        "| resolution | runtime | steps | ms/frame | vs torch | GMAC/frame | GFLOP/s | % CPU peak | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = torch_ms.get((r["resolution"], r["steps"]))
        speed = f"{base / r['ms']:.2f}x" if base else "-"
        pct = "-" if r["peak_pct"] is None else f"{r['peak_pct']:.1f}"
        lines.append(f"| {r['resolution']} | {r['runtime']} | {r['steps']} | {r['ms']:.0f} | {speed} | "
                     f"{r['gmac']:.1f} | {r['gflops']:.1f} | {pct} | {r['rss_mb']:.0f} |")
    lines.append("")
    lines.append(f"CPU peak: {assumption}. MACs: conv/matmul only (models.flops).")
    gpus = sorted({r["device"] for r in rows if r.get("device", "cpu") != "cpu"})
    if gpus:
        lines.append(f"torch-cuda: the torch backend on {', '.join(gpus)}, float16 autocast (% CPU peak: -).")
    return "\n".join(lines)


def _choices(args: argparse.Namespace) -> tuple[list[str], list[int], int, list[str]]:
    """(resolutions, steps, repeats, runtimes) of the command line; ValueError names a bad entry."""
    resolutions = ["kitti"] if args.quick else [r for r in args.resolutions.split(",") if r]
    steps = [1, 5] if args.quick else [int(s) for s in args.steps.split(",") if s]
    repeats = 1 if args.quick else args.repeats
    runtimes = [r for r in args.runtimes.split(",") if r]
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad:
        raise ValueError(f"unknown runtimes {bad}; choose from {', '.join(RUNTIMES)}")
    for r in resolutions:
        try:
            resolution(r)
        except ValueError as exc:
            raise ValueError(f"resolution {r!r}: use {', '.join(RESOLUTIONS)} or WxH ({exc})") from None
    return resolutions, steps, repeats, runtimes


def run(args: argparse.Namespace) -> int:
    if args.worker:
        print("RESULT", json.dumps(_worker(json.loads(args.worker))))
        return 0
    try:
        resolutions, steps, repeats, runtimes = _choices(args)
    except ValueError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 2
    for rt in list(runtimes):
        reason = unavailable(rt)
        if reason:
            print(f"benchmark: skipping {rt}: {reason}", flush=True)
            runtimes.remove(rt)
    if not runtimes:
        print("benchmark: none of the requested runtimes can run here", file=sys.stderr)
        return 2
    checkpoint = args.checkpoint or default_checkpoint()
    print(f"DiffusionDepth run time, {'checkpoint ' + checkpoint if checkpoint else 'default config (random weights)'}; "
          f"real frames from {args.data_dir or default_data_dir()}", flush=True)
    rows, assumption = run_benchmark(resolutions, steps, runtimes, repeats, args.threads, checkpoint,
                                     args.work_dir or None, args.data_dir)
    print(format_table(rows, assumption))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cpu_peak": assumption}, indent=2))
    return 0
