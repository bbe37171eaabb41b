"""Write the nodes' parameter tables into README.md from their ParamSpec declarations.

Each node module declares its parameters once, in ``PARAMETERS`` (a tuple of
``nodes.parameters.ParamSpec``). This script renders them as Markdown tables between
``<!-- params:NODE -->`` and ``<!-- /params:NODE -->`` markers in README.md, so the README can
never drift from what the nodes declare (``test/test_readme.py`` checks it).

    python docs/gen_node_docs.py          # rewrite README.md in place
    python docs/gen_node_docs.py --check  # exit 1 if README.md is out of date
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NODES = (
    "lidar_depth_projection_node",
    "depth_completion_node",
    "depth_super_resolution_node",
    "depth_estimation_node",
    "depth_evaluation_node",
)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'`"{v}"`'
    if isinstance(v, (list, tuple)):
        return "`[]`" if not v else "`[" + ", ".join(map(str, v)) + "]`"
    return f"`{v}`"


def params_table(node: str) -> str:
    """Markdown table of one node's declared parameters."""
    module = importlib.import_module(f"depth_diffusion_ros.nodes.{node}")
    rows = ["| name | default | description |", "|---|---|---|"]
    for spec in module.PARAMETERS:
        notes = []
        if spec.range:
            notes.append(f"range {spec.range[0]:g} to {spec.range[1]:g}")
        if spec.choices:
            notes.append("one of " + ", ".join(f"`{c}`" for c in spec.choices))
        if spec.read_only:
            notes.append("read-only")
        elif spec.dynamic:
            notes.append("changeable at run time")
        desc = spec.description.replace("|", "\\|")
        if notes:
            desc += " (" + "; ".join(notes) + ")"
        rows.append(f"| `{spec.name}` | {_value(spec.default)} | {desc} |")
    return "\n".join(rows)


def render(text: str) -> str:
    for node in NODES:
        pattern = re.compile(rf"(<!-- params:{node} -->\n).*?(<!-- /params:{node} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + params_table(node) + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    args = parser.parse_args()
    old = README.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print("README.md parameter tables are out of date: run python docs/gen_node_docs.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
