"""PR-curve summaries: pure packers (curve -> protobuf) and the writer methods.

The proto is torch's (spec 1.5) with two fixes: no 127-threshold cap, and the [6, T]
float32 tensor goes into ``tensor_content`` (raw little-endian, what TensorBoard's own
``pb()`` writes; the reader takes either, spec 8) instead of T*6 packed ``float_val``.
The ``PrCurvePluginData`` metadata holds ``num_thresholds`` = the column count, which old
TensorBoards used to truncate the data (spec 7).
"""

import numpy as np

from ._sink import SummarySink
from . import _tensor
from .pr_curve import PRCurve, PRCurveValueError, pr_curve
from .proto import DT_FLOAT, PrCurvePluginData, Summary, SummaryMetadata, TensorProto, TensorShapeProto

PLUGIN_NAME = "pr_curves"


def pr_curve_metadata(num_thresholds):
    """SummaryMetadata of a PR curve: plugin "pr_curves", content PrCurvePluginData
    version 0 (no display name or description, like torch)."""
    content = PrCurvePluginData(version=0, num_thresholds=int(num_thresholds)).SerializeToString()
    return SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content))


def pr_curve_tensor(data):
    """TensorProto DT_FLOAT of shape [6, T] from host data [6, T] (rounded to float32)."""
    arr = np.asarray(data, dtype="<f4")
    if arr.ndim != 2 or arr.shape[0] != 6:
        raise ValueError(f"PR-curve data must have shape [6, T], got {arr.shape}")
    shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=6), TensorShapeProto.Dim(size=arr.shape[1])])
    return TensorProto(dtype=DT_FLOAT, tensor_shape=shape, tensor_content=np.ascontiguousarray(arr).tobytes())


def _value(tag, data):
    tensor = pr_curve_tensor(data)
    return Summary.Value(tag=tag, metadata=pr_curve_metadata(tensor.tensor_shape.dim[1].size), tensor=tensor)


def _data(curve):
    return curve.data if isinstance(curve, PRCurve) else np.asarray(curve, dtype=np.float64)


def pr_curve_summary(tag, curve):
    """Summary with one PR curve under ``tag``. curve: a binary :class:`tbfast.PRCurve`
    or host data [6, T] (rows tp, fp, tn, fn, precision, recall). Raises
    PRCurveValueError if the curve saw bad values."""
    if isinstance(curve, PRCurve) and curve.per_class:
        raise ValueError("pr_curve_summary takes a binary curve; use pr_curves_summary for per-class curves")
    return Summary(value=[_value(tag, _data(curve))])


def class_tags(tag, num_classes, class_names=None):
    """``<tag>/<class name>`` for each class; default names are the class indices."""
    if class_names is None:
        class_names = [str(c) for c in range(num_classes)]
    else:
        class_names = [str(n) for n in class_names]
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for {num_classes} classes")
    return [f"{tag}/{name}" for name in class_names]


def pr_curves_summary(tag, curves, class_names=None):
    """Summary with one PR curve per class, tags ``<tag>/<class name>``. curves: a
    per-class :class:`tbfast.PRCurve` or host data [C, 6, T]."""
    data = _data(curves)
    if data.ndim != 3:
        raise ValueError(f"per-class PR-curve data must have shape [C, 6, T], got {data.shape}")
    tags = class_tags(tag, data.shape[0], class_names)
    return Summary(value=[_value(t, d) for t, d in zip(tags, data)])


def _host_row(x):
    if _tensor.is_torch_tensor(x):
        x = x.detach()
        if x.dtype.is_floating_point and x.element_size() < 4:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def pr_curve_raw_summary(tag, true_positive_counts, false_positive_counts, true_negative_counts,
                         false_negative_counts, precision, recall):
    """torch's pr_curve_raw: the six rank-1 rows stacked as given, nothing recomputed;
    num_thresholds in the metadata is the column count (no 127 cap)."""
    rows = [_host_row(r) for r in (true_positive_counts, false_positive_counts, true_negative_counts,
                                   false_negative_counts, precision, recall)]
    lengths = {r.size for r in rows}
    if len(lengths) != 1 or any(r.ndim != 1 for r in rows):
        raise ValueError(f"the six PR-curve rows must be rank 1 and of one length, got shapes "
                         f"{[r.shape for r in rows]}")
    return Summary(value=[_value(tag, np.stack(rows).astype(np.float64))])


def _tagged(method, tag, exc):
    msg = f"{method}({tag!r}): {exc}"
    if isinstance(exc, PRCurveValueError):
        return PRCurveValueError(msg, exc.counts)
    return type(exc)(msg)


class PRCurveLogging(SummarySink):
    """Writer methods for PR curves. The host class provides ``_write_summary`` and
    ``_write_deferred``. CPU curves are checked and packed at once; CUDA curves start
    their one host copy and are checked and packed on the writer's thread, so a bad value
    raises PRCurveValueError (naming the method and tag) on the writer's next call,
    ``flush()`` or ``close()``."""

    ACCELERATED = ("add_pr_curve",)

    def _write_curve(self, method, tag, curve, pack, global_step, walltime):
        if curve.device_type == "cpu":
            try:
                summary = pack(curve)
            except ValueError as exc:
                raise _tagged(method, tag, exc) from None
            self._write_summary(summary, global_step, walltime)
            return
        curve.start_host_copy()

        def summaries():
            try:
                return [pack(curve)]
            except ValueError as exc:
                raise _tagged(method, tag, exc) from None

        self._write_deferred(summaries, global_step, walltime)

    def add_pr_curve(self, tag, labels, predictions, global_step=None, num_thresholds=127, weights=None,
                     walltime=None) -> None:
        """torch's ``add_pr_curve``, computed by tbfast (see :func:`tbfast.pr_curve`), with
        no 127 cap: any num_thresholds in [2, 2^24].

        labels (bool/int/float, 0 or 1) and predictions (probabilities in [0, 1]) are paired
        element by element, flattened; weights None, a number, or one per prediction.
        Where torch silently drops predictions below 0, at or above 1 + 1/(T-1) or NaN,
        this raises PRCurveValueError (a ValueError naming the tag and the counts of each
        kind of bad value); likewise labels that are not 0/1 and negative weights. CUDA
        input is counted on the GPU and never waited for here (errors: see the class).
        """
        try:
            curve = pr_curve(labels, predictions, num_thresholds, weights, mode="binary")
        except ValueError as exc:
            raise _tagged("add_pr_curve", tag, exc) from None
        self._write_curve("add_pr_curve", tag, curve, lambda c: pr_curve_summary(tag, c), global_step, walltime)

    def add_pr_curve_raw(self, tag, true_positive_counts, false_positive_counts, true_negative_counts,
                         false_negative_counts, precision, recall, global_step=None, num_thresholds=127,
                         weights=None, walltime=None) -> None:
        """torch's ``add_pr_curve_raw``: writes the six rows as given. As in torch,
        ``weights`` is ignored and the data's length, not ``num_thresholds``, sets the
        curve's size; unlike torch, the metadata's num_thresholds is that length too
        (torch writes min(num_thresholds, 127) there)."""
        del num_thresholds, weights
        self._write_summary(pr_curve_raw_summary(tag, true_positive_counts, false_positive_counts,
                                                 true_negative_counts, false_negative_counts, precision, recall),
                            global_step, walltime)

    def add_pr_curves(self, tag, labels, predictions, global_step=None, num_thresholds=127, class_names=None,
                      weights=None, walltime=None, *, multilabel=False, logits=False):
        """One-vs-rest PR curves of every class in one pass, one curve per class under
        ``<tag>/<class name>`` (default names: the class indices), all in one event.

        predictions [N, C] probabilities (or raw scores with ``logits=True``: softmax per
        row, or sigmoid when ``multilabel``); labels [N] class indices, [N, C] one-hot,
        or [N, C] 0/1 with ``multilabel=True``; weights None, a number or [N].
        Each curve equals add_pr_curve on that class's column against (label == c).
        """
        mode = "multilabel" if multilabel else "multiclass"
        try:
            curves = pr_curve(labels, predictions, num_thresholds, weights, mode=mode, logits=logits)
            class_tags(tag, curves.num_classes, class_names)  # a bad class_names list raises now
        except ValueError as exc:
            raise _tagged("add_pr_curves", tag, exc) from None
        self._write_curve("add_pr_curves", tag, curves, lambda c: pr_curves_summary(tag, c, class_names),
                          global_step, walltime)

    def add_pr_accumulator(self, tag, accumulator, global_step=None, class_names=None, walltime=None, group=None):
        """Write a :class:`tbfast.PRCurveAccumulator`'s curves: under ``tag`` when binary,
        else one per class under ``<tag>/<class name>``. Raises PRCurveValueError if any
        update saw bad values (the deferred check; for a CUDA accumulator on the writer's
        next call). The state is snapshotted on its device now; later updates do not show.
        ``group`` (sharded evaluation): every rank calls; the accumulator is summed over
        the group in place (:meth:`PRCurveAccumulator.sync`) and rank 0 writes."""
        if group is not None:
            from . import distributed

            return distributed.add_pr_accumulator(self, tag, accumulator, global_step, class_names, walltime,
                                                  group=group)
        curve = accumulator.snapshot()

        def pack(c):
            return pr_curves_summary(tag, c, class_names) if c.per_class else pr_curve_summary(tag, c)

        self._write_curve("add_pr_accumulator", tag, curve, pack, global_step, walltime)
