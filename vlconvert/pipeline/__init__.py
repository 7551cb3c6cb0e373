"""The build, stage by stage: plan → shard tasks (read, check, decode, caption, write a tar) → the output folder.

``vlconvert.build`` (the function) lives in :mod:`vlconvert.pipeline.build`.
"""
