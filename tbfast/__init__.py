"""tbfast: TensorBoard histogram, PR-curve and image summaries computed where the data is.

Compute: :func:`histogram`, :func:`histograms`, :func:`pr_curve`,
:class:`PRCurveAccumulator`, :func:`image_grid`, :func:`encode_png`. Write:
:class:`SummaryWriter` (torch's API), or :func:`accelerate` an existing torch /
tensorboardX writer; :func:`watch` a model's parameter and gradient histograms.
``tbfast info`` (or ``python -m tbfast info``) prints which backends
are available and why not.
"""

from . import distributed
from .accelerate import accelerate
from .backends import BackendUnavailable
from .histogram import HistogramResult, default_edges, histogram, histograms
from .image import image_grid
from .png import encode_png
from .pr_curve import PRCurve, PRCurveAccumulator, PRCurveValueError, pr_curve
from .watch import unwatch, watch
from .writer import SummaryWriter

__version__ = "0.1.0"

__all__ = [
    "accelerate", "BackendUnavailable", "HistogramResult", "default_edges", "histogram", "histograms",
    "image_grid", "encode_png", "PRCurve", "PRCurveAccumulator", "PRCurveValueError", "pr_curve",
    "SummaryWriter", "watch", "unwatch", "distributed", "__version__",
]
