"""Built-in dataset adapters, installed as ``vlconvert.adapters``.

Each module reads one dataset's official release layout; ``vlconvert.registry``
names them.  See docs/architecture.md for how to add one.
"""
