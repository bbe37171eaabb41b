"""The README stays true: its opening commands, CI's test command and the node parameter tables."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
                 "depth_evaluation_node"):
        table = re.search(rf"<!-- params:{node} -->\n(.*?)<!-- /params:{node} -->", README, re.S)
        assert table and table.group(1).count("\n| `") >= 5, f"{node}: parameter table missing"
