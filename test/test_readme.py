"""The README stays true: its opening commands, CI's test command, the node parameter tables, the
generated (measured) blocks, and every shell block marked runnable, run as written on the shared data."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _opening_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block, "README must open with a bash block of set-up commands"
    return [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()]


def test_readme_opens_with_demo_and_test_commands():
    assert README.index("```bash") < README.index("\n## "), "the commands come before any section"
    assert _opening_commands() == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call the README's test command"
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo:", "test:"):
        assert re.search(rf"^{target} setup$", makefile, re.M), f"{target} must set up from nothing first"


def test_parameter_tables_match_the_nodes():
    result = subprocess.run([sys.executable, str(REPO / "docs" / "gen_node_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # every node section carries a non-empty table
    for node in ("lidar_depth_projection_node", "depth_completion_node", "depth_super_resolution_node",
                 "depth_estimation_node", "depth_evaluation_node"):
        table = re.search(rf"<!-- params:{node} -->\n(.*?)<!-- /params:{node} -->", README, re.S)
        assert table and table.group(1).count("\n| `") >= 5, f"{node}: parameter table missing"


def test_generated_blocks_are_known_and_dated():
    result = subprocess.run([sys.executable, str(REPO / "docs" / "gen_readme_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("demo", "setup", "tests", "export_parity", "baselines", "runtime"):
        assert f"<!-- generated:{name} -->" in README, name


def test_workspace_requirements_pin_like_requirements_txt_and_leave_the_system_packages():
    def pins(name: str) -> dict[str, str]:
        lines = [line.split(";")[0].strip() for line in (REPO / name).read_text().splitlines()]
        return {re.split(r"[=<>]", line)[0].lower(): line for line in lines if line and not line.startswith("#")}

    workspace, full = pins("requirements-workspace.txt"), pins("requirements.txt")
    assert not set(workspace) & {"numpy", "opencv-contrib-python-headless", "pyyaml"}  # rosdep's, not pip's
    for name, line in workspace.items():
        assert name in full, name
        if "==" in line:
            assert line == full[name], f"{name}: {line} vs requirements.txt {full[name]}"


# ---- the README's shell commands, run as a new user would ---------------------------------------

#: Fenced blocks that hold commands; each needs a marker comment on the line(s) just before it.
COMMAND_LANGUAGES = ("bash", "sh", "shell", "console", "python")
FENCE = re.compile(r"(?m)^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[ ]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S)
MARKER = re.compile(r"<!--\s*(?P<kind>runnable|not runnable here)(?P<rest>.*?)-->\s*$", re.S)


def command_blocks(text: str = README) -> list[dict]:
    """Every command block: its language, body, marker kind, reason or substitutions, line number."""
    blocks = []
    for m in FENCE.finditer(text):
        if m.group("lang") not in COMMAND_LANGUAGES:
            continue
        before = text[:m.start()].rstrip()
        start = before.rfind("<!--")
        marker = MARKER.search(before[start:]) if start >= 0 and before.endswith("-->") else None
        line = text[:m.start()].count("\n") + 1
        body = "\n".join(row[len(m.group("indent")):] for row in m.group("body").splitlines())
        block = {"line": line, "lang": m.group("lang"), "body": body, "kind": marker and marker.group("kind"),
                 "rest": (marker.group("rest").strip() if marker else ""), "subs": []}
        if block["kind"] == "runnable" and block["rest"]:
            spec = block["rest"].split("the test runs it with:", 1)
            assert len(spec) == 2, f"README line {line}: write '<!-- runnable; the test runs it with: OLD => NEW -->'"
            block["subs"] = [tuple(p.strip() for p in sub.split("=>")) for sub in spec[1].split(";") if sub.strip()]
        blocks.append(block)
    return blocks


def test_every_command_block_is_marked_runnable_or_says_why_not():
    blocks = command_blocks()
    assert len([b for b in blocks if b["kind"] == "runnable"]) >= 4
    for b in blocks:
        where = f"README line {b['line']}"
        assert b["kind"], f"{where}: put <!-- runnable --> or <!-- not runnable here: REASON --> before the block"
        if b["kind"] == "not runnable here":
            assert len(b["rest"].lstrip(":").strip()) > 10, f"{where}: say why it cannot run here"
        else:
            assert b["lang"] == "bash", f"{where}: runnable blocks are bash"
            for old, new in b["subs"]:
                assert old in b["body"] and old != new, f"{where}: {old!r} is not in the block"


def _scratch(tmp_path: Path, shared_data: Path) -> Path:
    """A fresh-clone-like folder: the repository's files (linked) without out/, and
    ../shared/data beside it, as a user's clone next to the shared data has."""
    work = tmp_path / "clone"
    work.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in ("out", ".git", ".venv") and not entry.name.startswith(".pytest"):
            (work / entry.name).symlink_to(entry)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    return work


def _script(block: dict) -> str:
    body = block["body"]
    for old, new in block["subs"]:
        body = body.replace(old, new)
    # the venv is this interpreter's (PATH below); everything else runs as written
    return "\n".join(line for line in body.splitlines() if not line.strip().startswith("source .venv/bin/activate"))


@pytest.mark.slow
@pytest.mark.ros
def test_readme_runnable_commands_work_as_written(tmp_path: Path, shared_data: Path, onnx_cache: Path):
    """Each block marked runnable, in README order, in one scratch folder (later blocks use what
    earlier ones made); a block fails on the first command that exits non-zero."""
    import os

    work = _scratch(tmp_path, shared_data)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "DDR_ONNX_CACHE": str(onnx_cache), "PYTHONUNBUFFERED": "1"}
    env.pop("DDR_SHARED_DATA", None)  # the commands find ../shared/data as a user's do
    outputs = {}
    for block in [b for b in command_blocks() if b["kind"] == "runnable"]:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", _script(block)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README line {block['line']} failed:\n{_script(block)}\n" \
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs[block["line"]] = proc.stdout + proc.stderr
    text = "\n".join(outputs.values())
    _check_what_the_commands_made(work, text)


def _check_what_the_commands_made(work: Path, text: str) -> None:
    import json

    out = work / "out"
    # item 5: -o out/kitti_object is a bag folder with kitti_object.mcap in it; the note matches the flag
    assert (out / "kitti_object" / "kitti_object.mcap").is_file()
    assert "held out on /kitti/velo/pointcloud_holdout" in text and "give --holdout-fraction" not in text
    reports = {name: json.loads((out / name / "report.json").read_text())
               for name in ("replay", "replay_onnx", "replay_export")}
    assert all(r["n_frames"] == 2 and not r["errors"] for r in reports.values()), reports
    # item 1: the torch checkpoint was exported for ONNX Runtime (and said so)
    from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT

    shipped = Path(reports["replay_onnx"]["meta"]["model_export"]["checkpoint"])
    assert shipped.parts[-3:] == DEFAULT_COMPLETION_CHECKPOINT.parts[-3:], shipped  # the README's --model-path
    assert "is a torch checkpoint" in text
    # item 3: the default export fits KITTI frames (1242x375 and 1224x370, padded to 1248x384)
    assert json.loads((out / "onnx" / "export.json").read_text())["width"] == 1248
    # item 4: the benchmark takes torch-cuda (run on a GPU, skipped with the reason here)
    assert "| torch |" in text and ("skipping torch-cuda" in text or "| torch-cuda |" in text)
    assert "ip_basic" in text or "model" in text
