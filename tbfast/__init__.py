"""tbfast: TensorBoard histogram, PR-curve and image summaries computed where the data is.

Compute: :func:`histogram`, :func:`histograms`. Write: :class:`SummaryWriter` (torch's
API), or :func:`accelerate` an existing torch / tensorboardX writer. ``tbfast info`` (or
``python -m tbfast info``) prints which backends are available and why not.
"""

from .accelerate import accelerate
from .backends import BackendUnavailable
from .histogram import HistogramResult, default_edges, histogram, histograms
from .writer import SummaryWriter

__version__ = "0.1.0"

__all__ = ["accelerate", "BackendUnavailable", "HistogramResult", "default_edges", "histogram", "histograms",
           "SummaryWriter", "__version__"]

for _optional in ("pr_curve", "image"):  # capabilities export their public names
    try:
        _mod = __import__(f"tbfast.{_optional}", fromlist=["__all__"])
    except ImportError:
        continue
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
