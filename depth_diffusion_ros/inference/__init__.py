"""ROS-free inference: pipelines (:mod:`.pipelines`) over backends (:mod:`.backends`).

``frames`` lays frames out as tensors, ``sampler`` holds the DDIM loop and the ensemble,
``errors`` the two error types (BackendError, FrameError).
"""
