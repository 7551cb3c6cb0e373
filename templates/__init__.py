"""Built-in caption templates (``*.j2``), installed as ``vlconvert.templates``.

Each template documents itself in its leading ``{# … #}`` comment;
``vlconvert templates`` lists them.
"""
