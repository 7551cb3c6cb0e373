"""vlconvert: fine-grained image-classification datasets → captioned webdataset shards.

    import vlconvert
    summary = vlconvert.build("inat2021", root="data/inat2021", out="shards/")

Adapters work on their own too::

    adapter = vlconvert.create_adapter("inat2021", "data/inat2021")
    for record in adapter.records("val"): ...
"""

from vlconvert import config, options  # vlconvert.config.load_config and vlconvert.options.OPTIONS after `import vlconvert`
from vlconvert.errors import BuildFailed, TooManyRejected, VLConvertError
from vlconvert.pipeline.build import BuildSummary, PlanSummary, Progress, SplitSummary, build
from vlconvert.pipeline.build_tables import read_tables
from vlconvert.readback.dedup_build import dedup
from vlconvert.readback.reshard import reshard
from vlconvert.records import Adapter, ClassInfo, Record, Rejected
from vlconvert.registry import available_adapters, create_adapter
from vlconvert.version import __version__

__all__ = [
    "Adapter",
    "BuildFailed",
    "BuildSummary",
    "PlanSummary",
    "Progress",
    "ClassInfo",
    "Record",
    "Rejected",
    "SplitSummary",
    "TooManyRejected",
    "VLConvertError",
    "__version__",
    "available_adapters",
    "config",
    "build",
    "create_adapter",
    "dedup",
    "options",
    "read_tables",
    "reshard",
]
