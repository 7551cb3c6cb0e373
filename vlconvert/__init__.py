"""vlconvert: fine-grained image-classification datasets → captioned webdataset shards.

    import vlconvert
    summary = vlconvert.build("inat2021", root="data/inat2021", out="shards/")

Adapters work on their own too::

    adapter = vlconvert.create_adapter("inat2021", "data/inat2021")
    for record in adapter.records("val"): ...
"""

__version__ = "0.2.0"

from .build import BuildSummary, PlanSummary, Progress, SplitSummary, build  # noqa: E402
from .records import Adapter, BuildFailed, ClassInfo, Record, Rejected, TooManyRejected, VLConvertError  # noqa: E402
from .registry import available_adapters, create_adapter  # noqa: E402

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
    "build",
    "create_adapter",
]
