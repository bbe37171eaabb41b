"""ament_python build for depth_diffusion_ros.

Installs only the ``depth_diffusion_ros`` package (not ``training/``), its launch and config
files, the shipped weights (with the default completion model's ONNX export in
``weights/diffusion_depth_kitti/onnx/``) and the ament resource marker. ``colcon build`` on a ROS 2
Humble/Jazzy/Kilted install and ``pip install -e .`` in a virtual environment both use it.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_diffusion_ros"

NODES = [
    "lidar_depth_projection_node",
    "depth_completion_node",
    "depth_evaluation_node",
    "depth_super_resolution_node",
    "depth_estimation_node",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*/*", "weights/*/onnx/*"]},  # onnx/: the shipped exports
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),  # launch files + depth_pipeline.py
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="depth_diffusion_ros maintainers",
    maintainer_email="maintainers@depth-diffusion-ros.invalid",
    description="Diffusion depth completion and super-resolution nodes for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{n} = {PACKAGE}.nodes.{n}:main" for n in NODES]
        + [f"depth-diffusion-ros = {PACKAGE}.cli:main"],
    },
)
