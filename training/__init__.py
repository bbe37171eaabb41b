"""Training code for depth_diffusion_ros (not installed with the node package).

datasets/ (KITTI DC / Eigen / object / file lists, NYU-Depth-v2), transforms (paired
augmentation), losses, trainer (model-agnostic, DDP), train (CLI), evaluate (protocols + CLI),
kitti_demo (the shipped demo weights), configs/ (YAML). Imports depth_diffusion_ros, never the
other way round.
"""
