"""Shared pytest fixtures.

ROS tests run real rclpy nodes over loopback DDS. Each pytest session picks its own
ROS_DOMAIN_ID so that test runs started at the same time on one machine never hear each other.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# DDR_TEST_DOMAIN_ID pins the domain (to watch a test with ros2 topic echo); random otherwise.
os.environ["ROS_DOMAIN_ID"] = os.environ.get(
    "DDR_TEST_DOMAIN_ID", str(random.SystemRandom().randint(1, 100))
)

# Fast DDS reads its XML profile once per process, when the first participant is created, so it
# is chosen here, before any test imports rclpy: 32 MiB shared-memory segments (a KITTI image,
# sparse depth or organised cloud overflows the 512 KiB default and is lost or stalls) and a
# 100 ms reliable heartbeat. DDR_TEST_FASTDDS_PROFILE= (empty) keeps Fast DDS's defaults; a
# FASTDDS_DEFAULT_PROFILES_FILE set by the user wins. Node processes inherit it.
_DDS_PROFILE = os.environ.get(
    "DDR_TEST_FASTDDS_PROFILE", str(Path(__file__).with_name("fastdds_test_profile.xml"))
)
if _DDS_PROFILE and os.environ["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp":
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", _DDS_PROFILE)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DDR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data`` (real KITTI, NYU and Middlebury samples); skips if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kitti_raw_dir(shared_data: Path) -> Path:
    return shared_data / "kitti_raw_depth_completion_torch_kitti"


@pytest.fixture(scope="session")
def kitti_object_dir(shared_data: Path) -> Path:
    return shared_data / "kitti_object_kuixu"


@pytest.fixture(scope="session")
def sequence_root(shared_data: Path) -> Path:
    """The shared 66-frame KITTI raw drive in the official layout; skips if absent."""
    root = shared_data / "kitti_raw_2011_09_26_sequence"
    if not root.is_dir():
        pytest.skip(f"shared KITTI raw sequence missing: {root}")
    return root


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One ONNX export cache for the session ($DDR_ONNX_CACHE), so that the tests that export the
    shipped checkpoint for a frame size (replay, the README commands) do it once."""
    path = tmp_path_factory.mktemp("onnx_cache")
    os.environ["DDR_ONNX_CACHE"] = str(path)
    return path
