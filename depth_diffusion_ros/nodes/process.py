"""Process set-up of every node: allocator settings and the spin loop with a clean shutdown.

Why plain ``rclpy.node.Node`` and not a lifecycle node: the nodes must run from a single
``ros2 run`` / ``ros2 launch`` command without a lifecycle manager, and ``launch_ros``'
``LifecycleNode`` plus the transition events would be needed in every launch file and test for
no gain here. All configuration work (parameter checks, backend construction, which may build
or load a TensorRT engine) happens once in the constructor, before any subscription exists; a
failure there exits with a message naming the parameter or file, which a launch file can
``respawn``. Backends keep no state that would need ``deactivate``/``cleanup`` between runs.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from depth_diffusion_ros.inference.errors import BackendError
from depth_diffusion_ros.nodes.parameters import ParameterError


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_frame_memory(enable: Optional[bool] = None) -> bool:
    """Let glibc keep freed frame-sized buffers for the next frame instead of unmapping them.

    A 1242x375 frame is handled as arrays of 0.5-15 MB (images, masks, the organised cloud and
    its C copy inside ``publish``). glibc serves such sizes with a fresh ``mmap`` and returns
    them with ``munmap`` (dynamic threshold from 128 KiB) or trims them from the heap top, so
    every frame page-faults its buffers in again: measured here, ~2,250 faults (~12 ms) per
    IP-Basic call and ~4,500 per 15 MB cloud, about 5-8 us each on this 2-core VM. This sets
    ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's maximum), ``M_TRIM_THRESHOLD`` to 256 MiB and
    ``M_TOP_PAD`` to 16 MiB, so the heap keeps the frame working set (RSS stays at its peak
    instead of shrinking between frames). Same idea as the allocator settings of real-time ROS 2
    setups; glibc only, nothing happens elsewhere.

    Args:
        enable: None = on unless the environment variable ``DDR_MALLOC_TUNING`` is ``0``.

    Returns:
        True if the settings were applied.
    """
    if enable is None:
        enable = os.environ.get("DDR_MALLOC_TUNING", "1") != "0"
    if not enable or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt tunables)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    ok &= mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)
    ok &= mallopt(_M_TOP_PAD, 16 * 1024 * 1024)
    return bool(ok)


def run_node(factory: Callable[[], Node], args: Optional[list[str]] = None, name: str = "node") -> int:
    """Run a node until SIGINT/SIGTERM; returns the process exit code.

    :func:`keep_frame_memory` is applied first (``DDR_MALLOC_TUNING=0`` leaves glibc's defaults).
    ``rclpy.init`` installs rclpy's SIGINT and SIGTERM handlers, which shut the context down and
    end ``rclpy.spin`` with ``ExternalShutdownException`` (or ``KeyboardInterrupt``); the node is
    then destroyed and rclpy shut down, and 0 is returned. A :class:`ParameterError` or
    :class:`BackendError` raised while constructing the node is logged as one FATAL line and
    returns 2.
    """
    keep_frame_memory()
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = factory()
        except (ParameterError, BackendError) as exc:
            rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
            return 2
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

