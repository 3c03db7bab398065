"""``tbfast.accelerate(writer)``: make an existing torch.utils.tensorboard or tensorboardX
``SummaryWriter`` compute its histograms, PR curves and images with tbfast.

The writer keeps writing through its own file writer (same files, same queue); only the
methods each capability lists in ``ACCELERATED`` are replaced, on that instance only.
tbfast's summaries are converted to the writer's own Summary class by serialising (the
protos are wire-compatible), so nothing mixes proto classes.
"""

import functools
import warnings

from .backends import BackendUnavailable
from .histogram_logging import HistogramLogging
from .image_logging import ImageLogging
from .pr_curve_logging import PRCurveLogging

_CAPABILITIES = (HistogramLogging, PRCurveLogging, ImageLogging)


class _ForeignSink(HistogramLogging, PRCurveLogging, ImageLogging):
    """Runs tbfast's writer methods and hands the summaries to a foreign writer."""

    def __init__(self, writer, summary_cls):
        self._writer = writer
        self._summary_cls = summary_cls

    def _write_summary(self, summary, global_step=None, walltime=None):
        self._write_summaries((summary,), global_step, walltime)

    def _write_summaries(self, summaries, global_step=None, walltime=None):
        file_writer = self._writer._get_file_writer()
        for s in summaries:
            data = s if isinstance(s, (bytes, bytearray)) else s.SerializeToString()
            file_writer.add_summary(self._summary_cls.FromString(data), global_step, walltime)


def _summary_class(writer):
    try:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter
    except ImportError:  # torch without tensorboard installed
        TorchWriter = None
    if TorchWriter is not None and isinstance(writer, TorchWriter):
        from tensorboard.compat.proto.summary_pb2 import Summary

        return Summary
    try:
        import tensorboardX
    except ImportError:
        tensorboardX = None
    if tensorboardX is not None and isinstance(writer, tensorboardX.SummaryWriter):
        from tensorboardX.proto.summary_pb2 import Summary

        return Summary
    raise TypeError(
        f"accelerate() takes a torch.utils.tensorboard.SummaryWriter or a tensorboardX.SummaryWriter, "
        f"got {type(writer).__module__}.{type(writer).__name__}"
    )


def accelerated_methods():
    """Names of the writer methods accelerate() replaces."""
    return tuple(name for cap in _CAPABILITIES for name in cap.ACCELERATED)


def _with_fallback(fast, original, name):
    """``fast``, falling back to the writer's own method for input tbfast does not take
    (a TypeError naming the input, or no backend for the device), so accelerate() is never
    worse than torch: such calls get torch's own behaviour and result."""

    @functools.wraps(original)
    def method(*args, **kwargs):
        try:
            return fast(*args, **kwargs)
        except (TypeError, BackendUnavailable) as exc:
            if name not in _warned:
                _warned.add(name)
                warnings.warn(f"tbfast.accelerate: {name} fell back to the writer's own method ({exc})", stacklevel=2)
            return original(*args, **kwargs)

    return method


_warned = set()


def accelerate(writer):
    """Route ``writer``'s add_histogram / add_pr_curve / add_image(s) (see
    :func:`accelerated_methods`) through tbfast; returns the same writer. A
    ``tbfast.SummaryWriter`` is returned unchanged. Calling it twice is harmless.
    Raises TypeError for any other object."""
    from .writer import SummaryWriter

    if isinstance(writer, SummaryWriter) or getattr(writer, "_tbfast_sink", None) is not None:
        return writer
    sink = _ForeignSink(writer, _summary_class(writer))
    for cap in _CAPABILITIES:
        for name in cap.ACCELERATED:
            # bound to the sink, on this instance only
            setattr(writer, name, _with_fallback(getattr(sink, name), getattr(writer, name), name))
    writer._tbfast_sink = sink
    return writer
