"""Damaged and bare bags (issue 16, item 3): an MCAP cut short is read up to the damage with the
mcap stream reader and scored, the report says how many frames were lost; a single ``.mcap``
file (or a folder of them) without metadata.yaml opens; report.json is written 0644."""
from __future__ import annotations

import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from depth_diffusion_ros.evaluation.report import load_report
from depth_diffusion_ros.tools.bag_io import BagError, BagReader
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.replay import ReplayOptions, plan_bag, replay

IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"


@pytest.fixture(scope="module")
def bag(kitti_object_dir: Path, tmp_path_factory) -> Path:
    """kitti-to-bag of the two real KITTI object frames (one MCAP file + metadata.yaml)."""
    out = tmp_path_factory.mktemp("salvage") / "obj"
    convert(discover_kitti(kitti_object_dir), out)
    return out


def _cut(src: Path, dst: Path, fraction: float) -> Path:
    """A copy of the bag (or .mcap file) whose MCAP file ends after ``fraction`` of its bytes."""
    if src.is_dir():
        shutil.copytree(src, dst)
        mcap = next(dst.glob("*.mcap"))
    else:
        mcap = dst
        shutil.copy(src, dst)
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * fraction)])
    return dst


def test_an_mcap_cut_at_half_is_scored_up_to_the_damage(bag: Path, tmp_path: Path) -> None:
    cut = _cut(bag, tmp_path / "cut", 0.5)
    with BagReader(cut) as reader:
        assert reader.salvaged and "File end magic is invalid" in reader.salvaged
        assert reader.counts_known and reader.topics[IMAGE_TOPIC][1] == 2  # what metadata.yaml says
        with pytest.raises(BagError, match="truncated or corrupt: reading failed after 1 messages"):
            list(reader.messages([IMAGE_TOPIC]))  # the first image, then the damage
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=cut, output=out, backend="nearest", figures=False, progress=False))
    report = load_report(out / "report.json")
    assert report["n_frames"] == 1 and report["frames"][0]["stamp_ns"] == 1_000_000_000
    assert np.isfinite(report["mean"]["rmse_mm"])
    assert report["skipped"] == {"unreadable_bag": 1}
    errors = "\n".join(report["errors"])
    assert "rosbags cannot open it (File end magic is invalid.); read with the mcap stream reader" in errors
    assert "1 of 2 frame(s) readable, 1 lost to the damage" in errors
    assert result.report["n_frames"] == 1
    assert stat.S_IMODE((out / "report.json").stat().st_mode) == 0o644


def test_a_single_mcap_file_and_a_folder_without_metadata_open(bag: Path, tmp_path: Path) -> None:
    mcap = next(bag.glob("*.mcap"))
    single = tmp_path / "single.mcap"
    shutil.copy(mcap, single)
    with BagReader(single) as reader:
        assert reader.salvaged is None and reader.counts_known
        assert reader.topics[IMAGE_TOPIC] == ("sensor_msgs/msg/Image", 2) and reader.message_count == 8
        assert [m.timestamp for m in reader.messages([IMAGE_TOPIC])] == [1_000_000_000, 1_100_000_000]
    plan = plan_bag(single)
    assert len(plan.frames) == 2 and not plan.errors and plan.calibration == "bag /tf_static"
    folder = tmp_path / "no_metadata"
    folder.mkdir()
    shutil.copy(mcap, folder / "part_0.mcap")
    assert len(plan_bag(folder).frames) == 2
    # cut short without metadata.yaml: frames before the damage, the loss cannot be counted
    cut = _cut(single, tmp_path / "cut.mcap", 0.5)
    plan = plan_bag(cut)
    assert len(plan.frames) == 1 and plan.unreadable_frames == 0
    assert "how many were lost is unknown" in plan.errors[-1]


def test_a_file_with_nothing_readable_is_one_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x89MCAP0\r\n" + b"\x01" + b"\xff" * 40)
    with pytest.raises(BagError, match=r"cannot open bag .*junk.mcap: .*; the mcap stream reader found no readable "
                                       r"message either"):
        BagReader(junk)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BagError, match="is a file; pass a rosbag2 directory"):
        BagReader(tmp_path / "notes.txt")
