"""The LiT recipe: train a text tower against a locked image tower on vlconvert shards.

Needs the ``lit`` extra (torch, open_clip).  ``vlconvert lit-train`` is the
entry point; ``train.train`` the Python one.
"""
