"""Training code for depth_diffusion_ros (not installed with the node package).

datasets/ (KITTI DC / Eigen / object / file lists, NYU-Depth-v2), transforms (paired
augmentation), trainer (model-agnostic, DDP), train (CLI), evaluate (protocols + CLI),
kitti_completion (the shipped default completion model, weights/diffusion_depth_kitti), sr_demo (the
shipped DSR-Diff demo weights), configs/ (YAML). The losses live with the models
(:mod:`depth_diffusion_ros.models.losses`). Imports depth_diffusion_ros, never the other way
round.
"""
