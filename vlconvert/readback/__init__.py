"""Reading a finished build back: one tar reader, statistics, ``validate``, ``inspect``, the HTML report, exports."""
