"""The layer rules of docs/ARCHITECTURE.md, checked on every import of the package and training/.

Imports go downwards only: geometry < evaluation < baselines < models < runtime < inference <
export < ros < nodes < tools (cli sits with tools). Plus: nothing ROS below ``ros/``; no torch
anywhere under ``runtime/`` and none at import time in ``models/__init__``; ``export`` only from
``tools/`` (and itself); ``training/`` never imports ``tools``. Function-level (lazy) imports count
too: a lazy import still ties the layers together.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "depth_diffusion_ros"
LAYERS = ("geometry", "evaluation", "baselines", "models", "runtime", "inference", "export", "ros", "nodes", "tools")
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["cli"] = RANK["tools"]  # the depth-diffusion-ros command dispatches to tools/
ROS_MODULES = {"rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs", "rcl_interfaces",
               "builtin_interfaces", "tf2_ros", "tf2_msgs", "cv_bridge", "sensor_msgs_py", "message_filters",
               "launch", "launch_ros"}
ROS_FREE = ("geometry", "evaluation", "baselines", "models", "runtime", "inference", "export")


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every import statement in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, id(node) in top))
    return out


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else Path(rel[0]).stem


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_module_belongs_to_a_layer():
    unknown = {_layer(p) for p in _package_files()} - set(RANK) - {"__init__"}
    assert not unknown, f"modules outside the layer picture: {unknown} (add them to docs/ARCHITECTURE.md)"


def test_imports_go_downwards_only():
    bad = []
    for path in _package_files():
        layer = _layer(path)
        if layer == "__init__":
            continue
        for line, module, _ in _imports(path):
            parts = module.split(".")
            if parts[0] != "depth_diffusion_ros" or len(parts) < 2:
                continue
            target = parts[1]
            if target in RANK and RANK[target] > RANK[layer]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {module} ({target})")
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", ROS_FREE)
def test_layers_below_ros_import_nothing_ros(layer):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {m}" for p in (PACKAGE / layer).rglob("*.py")
           for line, m, _ in _imports(p) if m.split(".")[0] in ROS_MODULES]
    assert not bad, "\n".join(bad)


def test_runtime_never_imports_torch_and_models_package_imports_it_lazily():
    bad = [f"{p.relative_to(ROOT)}:{line}" for p in (PACKAGE / "runtime").rglob("*.py")
           for line, m, _ in _imports(p) if m.split(".")[0] in ("torch", "timm", "torchvision")]
    assert not bad, f"torch under runtime/: {bad}"
    # what ``import depth_diffusion_ros.models`` runs must not import torch (ORT/TensorRT nodes read configs)
    for module in [m for _, m, at_top in _imports(PACKAGE / "models" / "__init__.py") if at_top]:
        assert module.split(".")[0] != "torch", module
        if module.startswith("depth_diffusion_ros.models."):
            sub = PACKAGE / "models" / (module.split(".")[2] + ".py")
            assert not [m for _, m, at_top in _imports(sub) if at_top and m.split(".")[0] == "torch"], sub
    for name in ("onnxruntime_backend", "tensorrt_backend", "exported", "classical", "base"):
        torch_at_all = [m for _, m, _ in _imports(PACKAGE / "inference" / "backends" / f"{name}.py")
                        if m.split(".")[0] == "torch"]
        assert not torch_at_all, f"inference/backends/{name}.py imports torch"


def test_export_is_used_by_tools_only_and_training_never_imports_tools():
    bad = []
    for path in _package_files():
        layer = _layer(path)
        for line, m, _ in _imports(path):
            if m.startswith("depth_diffusion_ros.export") and layer not in ("export", "tools", "cli"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {m}")
    for path in sorted((ROOT / "training").rglob("*.py")):
        bad += [f"{path.relative_to(ROOT)}:{line} imports {m}" for line, m, _ in _imports(path)
                if m.startswith("depth_diffusion_ros.tools")]
    assert not bad, "\n".join(bad)


def test_no_package_file_over_500_lines_and_no_tools_function_over_80():
    long_files = [f"{p.relative_to(ROOT)} ({n})" for p in _package_files()
                  if (n := len(p.read_text().splitlines())) > 500]
    assert not long_files, long_files
    long_functions = []
    for path in sorted((PACKAGE / "tools").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long_functions, long_functions


def test_a_layer_violation_is_caught(tmp_path):
    """The scanner itself: an upward import in a geometry-like file is reported."""
    f = tmp_path / "probe.py"
    f.write_text("def f():\n    from depth_diffusion_ros.nodes import health\n")
    assert _imports(f) == [(2, "depth_diffusion_ros.nodes", False)]
