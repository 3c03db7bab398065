"""PR curves: torch-exact threshold counts for any number of thresholds, many classes in
one pass, and a streaming accumulator whose memory does not grow with the data.

Public API: :func:`pr_curve`, :class:`PRCurve` (the result), :class:`PRCurveAccumulator`,
:class:`PRCurveValueError`. Semantics are ``torch.utils.tensorboard``'s ``compute_curve``
(spec 1.5) without its 127-threshold cap: a prediction ``p`` goes to bucket
``floor(p * (T-1))`` with the product rounded in the prediction's own dtype, and column
``i`` of the curve counts the samples whose bucket is ``>= i`` (threshold ``i / (T-1)``).
See csrc/pr_curve.h for the per-dtype rounding rules.

Differences from torch, on purpose: predictions outside [0, 1] or NaN, labels that are
not 0/1, class indices out of range and negative/NaN weights raise
:class:`PRCurveValueError` (torch silently drops predictions below 0, at or above
1 + 1/(T-1) and NaN, and uses any label value as a weight). No host sync is spent on the
checks: kernels count bad values per kind, and the error is raised when the counts are
read (at once for CPU inputs; for an accumulator, at ``compute()`` or the write).
"""

import numbers

import numpy as np

from . import _device, _dtypes, _native, _tensor, backends

__all__ = ["pr_curve", "PRCurve", "PRCurveAccumulator", "PRCurveValueError"]

MAX_THRESHOLDS = 1 << 24  # float32 products cannot resolve more thresholds
_MINIMUM_COUNT = 1e-7  # torch / TensorBoard: precision = tp / max(1e-7, tp + fp)
BLOCK_ROWS = 1 << 16  # csrc/pr_curve.h kPRBlockRows

# csrc/pr_curve.h PRBadKind; 8 slots are kept in the state.
BAD_KINDS = (
    "NaN predictions",
    "predictions outside [0, 1]",
    "NaN or infinite logits",
    "labels that are neither 0 nor 1",
    "class indices out of range",
    "negative, NaN or infinite weights",
)
NUM_BAD_SLOTS = 8

LABEL_MATRIX, LABEL_INDEX = 0, 1  # PRLabelMode
PROBABILITIES, SOFTMAX, SIGMOID = 0, 1, 2  # PRProbMode
MODES = ("auto", "binary", "multiclass", "multilabel")

_LABEL_KERNEL_DTYPES = {_dtypes.BOOL, _dtypes.UINT8, _dtypes.INT32, _dtypes.INT64, _dtypes.FLOAT32, _dtypes.FLOAT64}
_INTEGER = {_dtypes.UINT8, _dtypes.INT8, _dtypes.INT16, _dtypes.INT32, _dtypes.INT64, _dtypes.UINT16,
            _dtypes.UINT32, _dtypes.UINT64}


class PRCurveValueError(ValueError):
    """Bad values were seen in the data of a PR curve. ``counts`` maps each kind of bad
    value (a string of BAD_KINDS) to how many were seen."""

    def __init__(self, message, counts):
        super().__init__(message)
        self.counts = counts


# ---- input normalisation -----------------------------------------------------------------


def _shape(x):
    if _tensor.is_torch_tensor(x) or isinstance(x, np.ndarray):
        return tuple(x.shape)
    return np.shape(x)


def _as_array(x, name):
    if _tensor.is_torch_tensor(x):
        _tensor.check_tensor(x, name)  # nested / subclass errors before .shape is read
        return x
    return _tensor.as_numpy(x, name)


def _dtype_code(x, name):
    try:
        return _dtypes.code_of(x.dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None


def _cast(x, code):
    """``x`` converted to the dtype ``code`` on its own device (torch) or as NumPy."""
    name = _dtypes.CODE_NAMES[code]
    if _tensor.is_torch_tensor(x):
        import torch

        return x.detach().to(getattr(torch, name))
    return x.astype(name)


def _device_of(x):
    if _tensor.is_torch_tensor(x):
        d = x.device
        if d.type == "cuda":
            return ("cuda", d.index)
        return ("cpu", None)  # other devices are read on the host (see _tensor.describe)
    return ("cpu", None)


def check_num_thresholds(num_thresholds):
    """``num_thresholds`` as an int in [2, 2^24], else TypeError/ValueError."""
    if isinstance(num_thresholds, (bool, np.bool_)) or not isinstance(num_thresholds, numbers.Integral):
        raise TypeError(f"num_thresholds must be an int, got {type(num_thresholds).__name__}")
    t = int(num_thresholds)
    if not 2 <= t <= MAX_THRESHOLDS:
        raise ValueError(f"num_thresholds={t}: must be between 2 and {MAX_THRESHOLDS} (2^24: a float32 product "
                         f"p * (T-1) cannot tell more thresholds apart)")
    return t


class _Job:
    """One validated update: flat inputs, sizes and modes, ready for any backend."""

    __slots__ = ("pred", "labels", "weights", "weight_scalar", "weighted", "num_rows", "num_classes",
                 "num_thresholds", "label_mode", "prob_mode", "per_class", "device", "state", "stream",
                 "torch_stream")

    @property
    def device_type(self):
        return self.device[0]


def _resolve_mode(mode, pshape, lshape, pnumel, lnumel):
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    if mode == "auto":
        if len(pshape) == 2 and len(lshape) == 1 and lshape[0] == pshape[0] and pshape[1] != 1:
            return "multiclass"
        if pnumel == lnumel:
            return "binary"
        raise ValueError(f"labels of shape {lshape} do not match predictions of shape {pshape}: expected equal "
                         f"element counts (binary), or predictions [N, C] with class indices [N] (multiclass)")
    return mode


def _prepare(labels, predictions, num_thresholds, weights, mode, logits, num_classes=None):
    """Validate shapes, dtypes and devices (never values: that would cost a host sync on
    CUDA) and normalise the inputs for the kernels."""
    t = check_num_thresholds(num_thresholds)
    predictions = _as_array(predictions, "predictions")
    labels = _as_array(labels, "labels")
    pshape, lshape = _shape(predictions), _shape(labels)
    pnumel, lnumel = int(np.prod(pshape, dtype=np.int64)), int(np.prod(lshape, dtype=np.int64))
    mode = _resolve_mode(mode, pshape, lshape, pnumel, lnumel)
    job = _Job()
    if mode == "binary":
        if pnumel != lnumel:
            raise ValueError(f"labels ({lnumel} elements, shape {lshape}) and predictions ({pnumel} elements, "
                             f"shape {pshape}) must have the same number of elements")
        rows, classes, label_mode = pnumel, 1, LABEL_MATRIX
    else:
        if len(pshape) != 2:
            raise ValueError(f"{mode} predictions must have shape [N, C], got {pshape}")
        rows, classes = pshape
        if len(lshape) == 1 and mode == "multiclass":
            label_mode = LABEL_INDEX
        elif tuple(lshape) == tuple(pshape):
            label_mode = LABEL_MATRIX
        else:
            want = "[N] class indices or [N, C] one-hot" if mode == "multiclass" else "[N, C]"
            raise ValueError(f"{mode} labels must be {want} for predictions {pshape}, got {lshape}")
        if lshape[0] != rows:
            raise ValueError(f"labels have {lshape[0]} rows, predictions {rows}")
        if classes < 1:
            raise ValueError("predictions have no classes (C = 0)")
    if num_classes is not None and mode != "binary" and classes != num_classes:
        raise ValueError(f"predictions have {classes} classes, the accumulator {num_classes}")

    # dtypes: predictions any float as is, other numbers as float32 (exact for 0/1).
    pcode = _dtype_code(predictions, "predictions")
    if pcode not in _dtypes.FLOATING:
        predictions, pcode = _cast(predictions, _dtypes.FLOAT32), _dtypes.FLOAT32
    lcode = _dtype_code(labels, "labels")
    if label_mode == LABEL_INDEX:
        if lcode not in _INTEGER:
            raise TypeError(f"class-index labels must have an integer dtype, got {_dtypes.CODE_NAMES[lcode]}")
    if lcode not in _LABEL_KERNEL_DTYPES:
        if lcode in (_dtypes.FLOAT16, _dtypes.BFLOAT16):
            target = _dtypes.FLOAT32
        elif lcode in (_dtypes.UINT32, _dtypes.UINT64):
            target = _dtypes.INT64  # uint64 above 2^63 wraps negative: still a bad label
        else:
            target = _dtypes.INT32
        labels = _cast(labels, target)

    dev = _device_of(predictions)
    if _device_of(labels) != dev:
        raise ValueError(f"labels are on {_device_of(labels)[0]}, predictions on {dev[0]}")

    job.weight_scalar, job.weights, job.weighted = 1.0, None, weights is not None
    if weights is not None:
        if isinstance(weights, numbers.Real) and not isinstance(weights, (bool, np.bool_)):
            job.weight_scalar = float(weights)
            if not (job.weight_scalar >= 0 and np.isfinite(job.weight_scalar)):
                raise PRCurveValueError(f"weights={weights}: weights must be finite and non-negative",
                                        {BAD_KINDS[5]: 1})
        else:
            weights = _as_array(weights, "weights")
            wshape = _shape(weights)
            wnumel = int(np.prod(wshape, dtype=np.int64))
            if wnumel != rows:
                per = "one per prediction" if mode == "binary" else "one per row"
                raise ValueError(f"weights have {wnumel} elements (shape {wshape}); expected {rows}, {per}")
            if _device_of(weights) != dev:
                raise ValueError(f"weights are on {_device_of(weights)[0]}, predictions on {dev[0]}")
            wcode = _dtype_code(weights, "weights")
            if wcode not in (_dtypes.FLOAT32, _dtypes.FLOAT64):
                weights = _cast(weights, _dtypes.FLOAT64)
            job.weights = _tensor.describe(weights, "weights", layout="rowmajor")

    job.pred = _tensor.describe(predictions, "predictions", layout="rowmajor")
    job.labels = _tensor.describe(labels, "labels", layout="rowmajor")
    job.num_rows, job.num_classes, job.num_thresholds = int(rows), int(classes), t
    job.label_mode = label_mode
    job.prob_mode = PROBABILITIES if not logits else (SOFTMAX if mode == "multiclass" else SIGMOID)
    job.per_class = mode != "binary"
    job.device = dev
    return job


# ---- state: bucket counts that stay on the input's device ------------------------------


class _State:
    """Per-bucket counts ``[C, T, 2]`` (index 1: positive labels, 0: negative): int64
    ``counts`` when unweighted, float64 ``sums`` when weighted; ``bad`` int64 [8]."""

    __slots__ = ("counts", "sums", "bad", "device")

    def __init__(self, num_classes, num_thresholds, weighted, device=("cpu", None)):
        self.device = device
        shape = (num_classes, num_thresholds, 2)
        self.counts = None if weighted else _zeros(shape, np.int64, device)
        self.sums = _zeros(shape, np.float64, device) if weighted else None
        self.bad = _zeros((NUM_BAD_SLOTS,), np.int64, device)

    @property
    def weighted(self):
        return self.sums is not None

    def to_weighted(self):
        """Switch to float64 sums (exact for counts below 2^53); a device op, no sync."""
        if self.sums is None:
            self.sums = self.counts.astype(np.float64) if isinstance(self.counts, np.ndarray) else self.counts.double()
            self.counts = None

    def values(self):
        return self.sums if self.weighted else self.counts


def _zeros(shape, dtype, device):
    if device[0] == "cpu":
        return np.zeros(shape, dtype)
    import torch

    tdtype = torch.int64 if dtype == np.int64 else torch.float64
    return torch.zeros(shape, dtype=tdtype, device=f"cuda:{device[1]}")


def _host(x):
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()


def _ptr(x):
    if x is None:
        return 0
    return x.ctypes.data if isinstance(x, np.ndarray) else x.data_ptr()


def _run(job, state, backend, stream=None):
    if job.weighted and not state.weighted:
        state.to_weighted()
    if state.weighted and not job.weighted:
        job.weighted, job.weight_scalar = True, 1.0
    if job.num_rows == 0:
        return None
    job.state = state
    job.stream = job.torch_stream = None
    if job.device[0] == "cuda":
        job.stream = _device.resolve_stream(stream, job.device[1])
        job.torch_stream = _device.torch_stream(job.stream, job.device[1])
    with _device.StreamScope(job):
        backends.dispatch("pr_curve", job, backend)
    return None


# ---- the result ---------------------------------------------------------------------------


def _bad_message(bad, where):
    parts = [f"{n} {kind}" for n, kind in zip(bad, BAD_KINDS) if n]
    total = int(sum(bad[: len(BAD_KINDS)]))
    hint = ("predictions must be probabilities in [0, 1] (pass logits=True for raw scores), labels 0/1 "
            "(or class indices in [0, C)), weights finite and >= 0")
    return f"{where}: {total} bad value{'s' if total != 1 else ''} ({', '.join(parts)}); {hint}"


def curve_from_buckets(buckets):
    """[..., T, 2] per-bucket (negative, positive) counts or sums -> [..., 6, T] float64
    rows tp, fp, tn, fn, precision, recall; torch's compute_curve arithmetic."""
    b = np.asarray(buckets, dtype=np.float64)
    tp = np.cumsum(b[..., ::-1, 1], axis=-1)[..., ::-1]
    fp = np.cumsum(b[..., ::-1, 0], axis=-1)[..., ::-1]
    tn = fp[..., :1] - fp
    fn = tp[..., :1] - tp
    precision = tp / np.maximum(_MINIMUM_COUNT, tp + fp)
    recall = tp / np.maximum(_MINIMUM_COUNT, tp + fn)
    return np.stack((tp, fp, tn, fn, precision, recall), axis=-2)


class PRCurve:
    """Result of :func:`pr_curve` or :meth:`PRCurveAccumulator.compute`.

    ``buckets``: per-bucket counts [C, T, 2] (last axis: negative, positive labels), int64
    when unweighted, float64 when weighted, on the input's device. ``data``: float64
    [6, T] (binary) or [C, 6, T] (per class), rows tp, fp, tn, fn, precision, recall,
    column i for threshold i/(T-1); computed on first access and checked for bad values
    (raises :class:`PRCurveValueError`). ``curve[c]`` is class c's binary curve.
    """

    def __init__(self, state, num_thresholds, per_class):
        self._state = state
        self.num_thresholds = num_thresholds
        self.per_class = per_class
        self._data = None
        self._checked = False
        self._copy = None  # HostCopy of (values, bad) once started

    @property
    def device_type(self):
        return self._state.device[0]

    def start_host_copy(self):
        """Begin the one asynchronous copy of the counts and bad-value counters to the
        host (pinned memory + an event); never waits for the device. No-op on CPU."""
        if self._copy is None and self.device_type == "cuda":
            self._copy = _device.HostCopy([self._state.values(), self._state.bad])
        return self

    def ready(self):
        return self.device_type == "cpu" or (self._copy is not None and self._copy.ready())

    def _host_state(self):
        """(values, bad) as host arrays (waits for the copy on CUDA)."""
        if self.device_type == "cpu":
            return self._state.values(), self._state.bad
        self.start_host_copy()
        values, bad = self._copy.wait()
        return values, bad

    @property
    def num_classes(self):
        return self._state.values().shape[0]

    @property
    def weighted(self):
        return self._state.weighted

    @property
    def buckets(self):
        v = self._state.values()
        return v if self.per_class else v[0]

    def bad_counts(self):
        """{kind: count} of the bad values seen (reads the counters: a host sync on CUDA)."""
        bad = self._host_state()[1]
        return {kind: int(n) for kind, n in zip(BAD_KINDS, bad) if n}

    def check(self):
        """Raise PRCurveValueError if any bad value was seen; return self."""
        if not self._checked:
            bad = [int(n) for n in self._host_state()[1]]
            if any(bad):
                raise PRCurveValueError(_bad_message(bad, "pr_curve"), self.bad_counts())
            self._checked = True
        return self

    @property
    def data(self):
        if self._data is None:
            self.check()
            d = curve_from_buckets(self._host_state()[0])
            self._data = d if self.per_class else d[0]
        return self._data

    def numpy(self):
        return self.data

    def _row(self, i):
        return self.data[..., i, :]

    tp = property(lambda self: self._row(0), doc="true positives per threshold")
    fp = property(lambda self: self._row(1), doc="false positives per threshold")
    tn = property(lambda self: self._row(2), doc="true negatives per threshold")
    fn = property(lambda self: self._row(3), doc="false negatives per threshold")
    precision = property(lambda self: self._row(4), doc="tp / max(1e-7, tp + fp)")
    recall = property(lambda self: self._row(5), doc="tp / max(1e-7, tp + fn)")

    @property
    def thresholds(self):
        return np.linspace(0.0, 1.0, self.num_thresholds)

    def __getitem__(self, c):
        if not self.per_class:
            raise TypeError("a binary PR curve has no classes to index")
        self.check()
        st = _State.__new__(_State)
        st.device, st.bad = self._state.device, self._state.bad
        c = range(self.num_classes)[c]  # IndexError when out of range
        v = self._state.values()[c : c + 1]
        st.counts, st.sums = (None, v) if self.weighted else (v, None)
        out = PRCurve(st, self.num_thresholds, False)
        out._checked = True
        if self._copy is not None:  # already on the host: no new copy
            out._data = self.data[c]
        return out

    def __len__(self):
        return self.num_classes if self.per_class else 1

    def __repr__(self):
        kind = f"{self.num_classes} classes" if self.per_class else "binary"
        return f"PRCurve({kind}, num_thresholds={self.num_thresholds}, weighted={self.weighted})"


@_tensor.untraced
def pr_curve(labels, predictions, num_thresholds=127, weights=None, *, mode="auto", logits=False, backend=None,
             stream=None):
    """PR-curve threshold counts in one pass over the data.

    labels, predictions: torch tensors (CPU or CUDA), NumPy arrays or sequences, same
    device. CUDA input is counted on its GPU on ``stream`` (default: the current stream);
    the result stays there until read, and bad values raise when it is first read.
      * binary (``mode="binary"``, or ``"auto"`` when both have the same number of
        elements, whatever the shapes, flattened row-major, and it is not multiclass): predictions are
        probabilities in [0, 1], any float dtype (integer/bool as 0/1); labels bool,
        integer or float, each 0 or 1. Result data [6, T].
      * ``"multiclass"`` (``"auto"`` picks it for predictions [N, C], C > 1, and labels [N]):
        labels are class indices [N] (integer dtype) or one-hot [N, C]; one curve per
        class, one-vs-rest. Result data [C, 6, T].
      * ``"multilabel"``: predictions and labels [N, C], labels 0/1.
    num_thresholds: T, 2 <= T <= 2^24 (no 127 cap).
    weights: None, a non-negative number, or one per prediction (binary) / per row
      (multi-class); sums are float64 in np.histogram's order, equal to torch's.
    logits: predictions are raw scores; softmax per row (multiclass) or sigmoid (binary,
      multilabel) is applied inside the kernel in float64, with no probability tensor.

    Bucket of p: floor(p * (T-1)) with the product rounded in the prediction's dtype
    (float32 in float32, float64 in float64; float16/bfloat16 rounded to float16 like
    torch when T <= 2049, float32 above). Empty input gives an all-zero curve (as torch).

    Raises TypeError/ValueError for bad dtypes, shapes, devices or num_thresholds, and
    :class:`PRCurveValueError` (a ValueError) for bad values: predictions NaN or outside
    [0, 1] (torch drops those silently), labels not 0/1, class indices out of range,
    negative/NaN weights; the message says how many of each kind.
    """
    job = _prepare(labels, predictions, num_thresholds, weights, mode, logits)
    state = _State(job.num_classes, job.num_thresholds, job.weighted, job.device)
    _run(job, state, backend, stream)
    result = PRCurve(state, job.num_thresholds, job.per_class)
    if job.device[0] == "cpu":
        result.check()  # free on the host; on CUDA deferred to the first read
    return result


def _backend_of(dist, group):
    """The group's backend(s) as a string: "gloo", "nccl", or "cpu:gloo,cuda:nccl" for a
    group made without a backend argument (get_backend says "undefined" there)."""
    config = getattr(dist, "get_backend_config", None)
    return str(config(group) if config is not None else dist.get_backend(group))


class PRCurveAccumulator:
    """Streaming PR curves: memory O(C * T) whatever the number of samples.

    ``num_classes=None``: binary (``update(predictions, labels)`` with equal element
    counts). Otherwise predictions [N, num_classes] with class indices [N] or one-hot
    [N, C] labels, or 0/1 labels [N, C] when ``multilabel``. ``logits=True`` applies
    softmax (multiclass) or sigmoid (binary, multilabel) in the kernel.

    ``update`` never reads data back to the host: bad values are counted on the state's
    device and ``compute()`` raises :class:`PRCurveValueError` if there were any. The
    state lives on the device of the first update; ``merge`` adds another accumulator's
    state (sums for weighted ones), e.g. after a gather; ``state_dict`` holds the raw
    counts, so summing state dicts (or all_reduce of ``buckets``) merges too.
    """

    def __init__(self, num_thresholds=127, num_classes=None, multilabel=False, *, logits=False, backend=None):
        self.num_thresholds = check_num_thresholds(num_thresholds)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
            num_classes = int(num_classes)
        elif multilabel:
            raise ValueError("multilabel=True needs num_classes")
        self.num_classes = num_classes
        self.multilabel = bool(multilabel)
        self.logits = bool(logits)
        self.backend = backend
        self._state = None

    @property
    def mode(self):
        if self.num_classes is None:
            return "binary"
        return "multilabel" if self.multilabel else "multiclass"

    def _classes(self):
        return 1 if self.num_classes is None else self.num_classes

    @_tensor.untraced
    def update(self, predictions, labels, weights=None, stream=None):
        """Add a batch. Shapes, dtypes and devices are checked now; values at compute().
        Never waits for the device (CUDA input runs on ``stream``, default the current one)."""
        job = _prepare(labels, predictions, self.num_thresholds, weights, self.mode, self.logits,
                       num_classes=self.num_classes)
        if self._state is None:
            self._state = _State(self._classes(), self.num_thresholds, job.weighted, job.device)
        elif self._state.device != job.device:
            raise ValueError(f"this accumulator's state is on {self._state.device[0]}, the batch on {job.device[0]}")
        _run(job, self._state, self.backend, stream)
        return self

    def _ensure_state(self):
        if self._state is None:
            self._state = _State(self._classes(), self.num_thresholds, False)
        return self._state

    def merge(self, other):
        """Add ``other``'s counts (same num_thresholds, classes and mode) into this one."""
        if not isinstance(other, PRCurveAccumulator):
            raise TypeError(f"can only merge a PRCurveAccumulator, got {type(other).__name__}")
        if (other.num_thresholds, other.num_classes, other.multilabel) != (
                self.num_thresholds, self.num_classes, self.multilabel):
            raise ValueError("cannot merge accumulators with different num_thresholds, num_classes or multilabel")
        if other._state is None:
            return self
        self._add_values(other._state.values(), other._state.bad, other._state.weighted)
        return self

    def _add_values(self, values, bad, weighted):
        st = self._ensure_state()
        if weighted:
            st.to_weighted()
        if st.weighted:
            st.sums += values if weighted else _like(values, st.sums, np.float64)
        else:
            st.counts += _like(values, st.counts, np.int64)
        st.bad += _like(bad, st.bad, np.int64)

    def compute(self):
        """The curves so far (:class:`PRCurve`, data [6, T] or [C, 6, T]); raises
        PRCurveValueError when any update saw bad values (on CUDA: waits for the device)."""
        return self.snapshot().check()

    def snapshot(self):
        """The curves so far as an unchecked :class:`PRCurve` over a copy of the state, made
        on the state's device without waiting for it (the writer packs it later)."""
        st = self._ensure_state()
        copy = _State.__new__(_State)
        copy.device = st.device
        copy.counts = None if st.counts is None else st.counts.copy() if isinstance(st.counts, np.ndarray) else st.counts.clone()
        copy.sums = None if st.sums is None else st.sums.copy() if isinstance(st.sums, np.ndarray) else st.sums.clone()
        copy.bad = st.bad.copy() if isinstance(st.bad, np.ndarray) else st.bad.clone()
        return PRCurve(copy, self.num_thresholds, self.num_classes is not None)

    def sync(self, group=None):
        """Sum the accumulated state over a torch.distributed ``group`` (default: the
        world) in place, for sharded evaluation: afterwards every rank holds the curve of
        the union of all ranks' batches. Every rank must call it, with the same
        configuration; ranks may differ in what they saw (no batch at all, unweighted or
        weighted batches).

        One all_reduce(SUM) of one float64 buffer: the counts or weighted sums, the
        bad-value counters and a 'weighted' flag. Counts are exact in float64 below 2^53
        (more samples than any evaluation set). If any rank was weighted, every rank
        switches to weighted sums (unweighted samples weigh 1); otherwise the counts go
        back to int64 exactly. A CUDA state is never read on the host here: it always
        becomes float64 sums (knowing whether any rank was weighted would need a host
        read; sums of counts are exact below 2^53, and the curves are the same), so sync()
        adds no host sync before the one copy to the host. The collective runs where the
        backend wants it: when the group has an NCCL backend (alone, or beside gloo as
        ``init_process_group()`` without a backend makes it), it runs on CUDA on every
        rank: a rank that saw no batch creates its state on the CUDA current device, and a
        CPU state is moved to CUDA and back; otherwise on the CPU."""
        import torch
        import torch.distributed as dist

        from . import distributed

        group = distributed.resolve_group(True if group is None else group)
        nccl = "nccl" in _backend_of(dist, group)  # "nccl", or e.g. "cpu:gloo,cuda:nccl": collectives on CUDA
        if self._state is None:  # nothing seen here: zeros where the collective runs
            device = ("cuda", torch.cuda.current_device()) if nccl else ("cpu", None)
            self._state = _State(self._classes(), self.num_thresholds, False, device)
        st = self._state
        as_t = lambda x: torch.from_numpy(x) if isinstance(x, np.ndarray) else x  # noqa: E731
        v, bad = as_t(st.values()), as_t(st.bad)
        flag = torch.full((1,), float(st.weighted), dtype=torch.float64, device=v.device)
        buf = torch.cat([v.reshape(-1).to(torch.float64), bad.to(torch.float64), flag])
        if nccl and buf.device.type == "cpu":
            buf = buf.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
        buf = buf.to(v.device)
        n = v.numel()
        if buf.device.type == "cuda" or buf[-1].item() > 0:  # some rank was weighted: every rank holds sums
            st.to_weighted()
        as_t(st.values()).reshape(-1).copy_(buf[:n])  # float64 -> int64 exact for counts below 2^53
        bad.copy_(buf[n:n + NUM_BAD_SLOTS])
        return self

    def reset(self):
        self._state = None
        return self

    def state_dict(self):
        """Config plus the raw state: ``buckets`` [C, T, 2] (int64 counts, or float64
        sums when weighted) and ``bad`` [8], as arrays on the state's device."""
        st = self._ensure_state()
        return {"num_thresholds": self.num_thresholds, "num_classes": self.num_classes,
                "multilabel": self.multilabel, "logits": self.logits, "weighted": st.weighted,
                "buckets": st.values(), "bad": st.bad}

    def load_state_dict(self, state_dict):
        sd = state_dict
        if (sd["num_thresholds"], sd["num_classes"], bool(sd["multilabel"])) != (
                self.num_thresholds, self.num_classes, self.multilabel):
            raise ValueError("state_dict was saved with a different num_thresholds, num_classes or multilabel")
        buckets, bad = sd["buckets"], sd["bad"]
        want = (self._classes(), self.num_thresholds, 2)
        if tuple(_shape(buckets)) != want or tuple(_shape(bad)) != (NUM_BAD_SLOTS,):
            raise ValueError(f"state_dict buckets must have shape {want} and bad ({NUM_BAD_SLOTS},)")
        self.logits = bool(sd.get("logits", self.logits))
        self._state = None
        if _tensor.is_torch_tensor(buckets) and buckets.device.type == "cuda":
            self._state = _State(self._classes(), self.num_thresholds, bool(sd["weighted"]), _device_of(buckets))
        self._add_values(buckets, bad, bool(sd["weighted"]))
        return self

    def __repr__(self):
        return (f"PRCurveAccumulator(num_thresholds={self.num_thresholds}, num_classes={self.num_classes}, "
                f"multilabel={self.multilabel}, logits={self.logits})")


def _like(x, ref, np_dtype):
    """``x`` as an array of ``ref``'s kind (NumPy or torch, same device) and dtype."""
    if isinstance(ref, np.ndarray):
        return np.asarray(_host(x) if _tensor.is_torch_tensor(x) else x, dtype=np_dtype)
    import torch

    tdtype = torch.int64 if np_dtype == np.int64 else torch.float64
    return torch.as_tensor(x).to(device=ref.device, dtype=tdtype)


# ---- backends -----------------------------------------------------------------------------


def _native_cpu(job):
    state = job.state
    mod, why = _native.cpu()
    if mod is None:
        raise backends.BackendUnavailable(why)
    w = job.weights
    mod.pr_curve(predictions=job.pred.ptr, pred_dtype=job.pred.dtype, labels=job.labels.ptr,
                 label_dtype=job.labels.dtype, weights=w.ptr if w is not None else 0,
                 weight_dtype=w.dtype if w is not None else _dtypes.FLOAT64, weight_scalar=float(job.weight_scalar),
                 num_rows=job.num_rows, num_classes=job.num_classes, num_thresholds=job.num_thresholds,
                 label_mode=job.label_mode, prob_mode=job.prob_mode, counts=_ptr(state.counts),
                 wsums=_ptr(state.sums), bad=_ptr(state.bad), num_threads=_native.num_threads())


def _native_cuda(job):
    """csrc/cuda/pr_curve_cuda.cu on the job's stream; adds into the device state."""
    mod, why = _native.cuda()
    if mod is None:
        raise backends.BackendUnavailable(why)
    import torch

    state, w = job.state, job.weights
    nbytes = mod.pr_curve_cuda_scratch_bytes(num_rows=job.num_rows, num_classes=job.num_classes,
                                             num_thresholds=job.num_thresholds, weighted=bool(job.weighted))
    scratch = torch.empty(max(1, nbytes), dtype=torch.uint8, device=state.bad.device)
    mod.pr_curve_cuda(predictions=job.pred.ptr, pred_dtype=job.pred.dtype, labels=job.labels.ptr,
                      label_dtype=job.labels.dtype, weights=w.ptr if w is not None else 0,
                      weight_dtype=w.dtype if w is not None else _dtypes.FLOAT64,
                      weight_scalar=float(job.weight_scalar), num_rows=job.num_rows, num_classes=job.num_classes,
                      num_thresholds=job.num_thresholds, label_mode=job.label_mode, prob_mode=job.prob_mode,
                      counts=_ptr(state.counts), wsums=_ptr(state.sums), bad=_ptr(state.bad),
                      scratch=scratch.data_ptr(), scratch_bytes=nbytes, stream=job.stream,
                      device=job.device[1])


def _numba_cuda(job):
    from .numba_kernels import pr_curve_numba_cuda as k

    k.run(job)


def _reference_torch(job):
    """Plain torch ops on the job's device (CUDA, or meta in the tests), the same checks in
    the same order as the kernels, and no host sync: no boolean-mask indexing, no .item().
    Weighted sums use float atomics here (equal to rounding, not bit-identical run to run;
    the native and Numba CUDA kernels are deterministic)."""
    import torch

    state = job.state
    C, T, n = job.num_classes, job.num_thresholds, job.num_rows
    dev = state.bad.device
    f64 = torch.float64
    x = job.pred.flat_owner()
    x = (x.double() if job.pred.dtype == _dtypes.FLOAT64 else x.float()).reshape(n, C)
    lab = job.labels.flat_owner()
    bad = torch.zeros(NUM_BAD_SLOTS, dtype=torch.int64, device=dev)
    ok_row = torch.ones(n, dtype=torch.bool, device=dev)
    w = None
    if job.weighted:
        if job.weights is not None:
            w = job.weights.flat_owner().to(f64)
        else:
            w = torch.full((n,), float(job.weight_scalar), dtype=f64, device=dev)
        wbad = ~((w >= 0) & (w <= np.finfo(np.float64).max))
        bad[5] += wbad.sum()
        ok_row &= ~wbad
    classes = torch.arange(C, device=dev)
    if job.label_mode == LABEL_INDEX:
        li = lab.to(torch.int64)
        ibad = ok_row & ((li < 0) | (li >= C))
        bad[4] += ibad.sum()
        ok_row &= ~ibad
        pos = (classes[None, :] == li[:, None]).long()
        lbad = torch.zeros((n, C), dtype=torch.bool, device=dev)
    else:
        labm = lab.reshape(n, C)
        if labm.dtype == torch.bool:
            pos, lbad = labm.long(), torch.zeros((n, C), dtype=torch.bool, device=dev)
        else:
            pos, lbad = (labm == 1).long(), ~((labm == 0) | (labm == 1))
    tm1 = T - 1
    if job.prob_mode == SOFTMAX:
        xd = x.to(f64)
        nonfin = ~torch.isfinite(xd)
        rowbad = ok_row & nonfin.any(dim=1)
        bad[2] += (nonfin & rowbad[:, None]).sum()
        ok_row &= ~rowbad
        xs = torch.where(ok_row[:, None], xd, torch.zeros((), dtype=f64, device=dev))
        e = torch.exp(xs - xs.amax(dim=1, keepdim=True))
        prob = e / e.sum(dim=1, keepdim=True)
        pbad = torch.zeros((n, C), dtype=torch.bool, device=dev)
        elem_ok = ok_row[:, None] & ~lbad
        b = (prob * float(tm1)).long()
        bad[3] += (ok_row[:, None] & lbad).sum()
    else:
        elem_ok = ok_row[:, None] & ~lbad
        bad[3] += (ok_row[:, None] & lbad).sum()
        if job.prob_mode == SIGMOID:
            xd = x.to(f64)
            pbad = ~torch.isfinite(xd)
            bad[2] += (elem_ok & pbad).sum()
            prob = 1.0 / (1.0 + torch.exp(-torch.where(pbad, torch.zeros((), dtype=f64, device=dev), xd)))
            b = (prob * float(tm1)).long()
        else:
            isnan = torch.isnan(x)
            pbad = ~((x >= 0) & (x <= 1))
            bad[0] += (elem_ok & isnan).sum()
            bad[1] += (elem_ok & pbad & ~isnan).sum()
            v = torch.where(pbad, torch.zeros((), dtype=x.dtype, device=dev), x)
            if job.pred.dtype == _dtypes.FLOAT64:
                b = (v * float(tm1)).long()
            else:
                prod = v * torch.tensor(float(tm1), dtype=torch.float32, device=dev)
                if job.pred.dtype in (_dtypes.FLOAT16, _dtypes.BFLOAT16) and tm1 <= 2048:
                    prod = prod.half()  # round to nearest even, as NumPy's float16 multiply
                b = prod.long()
    keep = elem_ok & ~pbad
    b = torch.where(keep, b, torch.zeros_like(b))
    cell = ((classes[None, :] * T + b) * 2 + pos).reshape(-1)
    if job.weighted:
        add = torch.where(keep, w[:, None].expand(n, C), torch.zeros((), dtype=f64, device=dev)).reshape(-1)
        state.sums.view(-1).scatter_add_(0, cell, add)
    else:
        state.counts.view(-1).scatter_add_(0, cell, keep.long().reshape(-1))
    state.bad += bad


def _float_values(flat):
    """Predictions as float32/float64 NumPy values (16-bit floats widened exactly)."""
    a = flat.numpy()
    if flat.dtype == _dtypes.BFLOAT16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    if flat.dtype == _dtypes.FLOAT16:
        return a.astype(np.float32)
    return a


def _numba_cpu(job):
    state = job.state
    from .numba_kernels import pr_curve_numba as k

    pred = _float_values(job.pred)
    half = job.pred.dtype in (_dtypes.FLOAT16, _dtypes.BFLOAT16) and job.num_thresholds - 1 <= 2048
    tm1 = pred.dtype.type(job.num_thresholds - 1)
    labels = job.labels.numpy().astype(np.float64)
    label_index = job.label_mode == LABEL_INDEX
    C, T = job.num_classes, job.num_thresholds
    bad = state.bad
    if job.weighted:
        has_w = job.weights is not None
        w = job.weights.numpy().astype(np.float64) if has_w else np.zeros(0, np.float64)
        k.sum_weighted(pred, tm1, half, labels, label_index, w, has_w, float(job.weight_scalar), C, T,
                       job.prob_mode, job.num_rows, state.sums.reshape(-1), bad)
    else:
        import numba

        nseg = max(1, min(numba.get_num_threads(), (job.num_rows + BLOCK_ROWS - 1) // BLOCK_ROWS))
        k.count_unweighted(pred, tm1, half, labels, label_index, C, T, job.prob_mode, job.num_rows, nseg,
                           state.counts.reshape(-1), bad)


def _reference_buckets(v, code, t):
    """floor(v * (T-1)) for probabilities v in [0, 1], rounded per dtype (csrc/pr_curve.h)."""
    if code == _dtypes.FLOAT64:
        return (v * np.float64(t - 1)).astype(np.int64)
    prod = v.astype(np.float32) * np.float32(t - 1)
    if code in (_dtypes.FLOAT16, _dtypes.BFLOAT16) and t - 1 <= 2048:
        prod = prod.astype(np.float16)  # RNE of the exact float32 product, as NumPy's fp16 multiply
    return prod.astype(np.int64)


def _reference_cpu(job):
    state = job.state
    """NumPy, vectorised per block of BLOCK_ROWS rows; same checks in the same order as the
    kernels, and the same order of float64 additions."""
    C, T = job.num_classes, job.num_thresholds
    pred_all = _float_values(job.pred).reshape(-1, C) if job.num_rows else None
    lab_all = job.labels.numpy()
    w_all = job.weights.numpy() if job.weights is not None else None
    bad = np.zeros(NUM_BAD_SLOTS, np.int64)
    for r0 in range(0, job.num_rows, BLOCK_ROWS):
        r1 = min(r0 + BLOCK_ROWS, job.num_rows)
        n = r1 - r0
        x = pred_all[r0:r1]
        ok_row = np.ones(n, bool)
        w = None
        if job.weighted:
            w = (w_all[r0:r1].astype(np.float64) if w_all is not None else np.full(n, job.weight_scalar))
            wbad = ~((w >= 0) & (w <= np.finfo(np.float64).max))
            bad[5] += int(wbad.sum())
            ok_row &= ~wbad
        if job.label_mode == LABEL_INDEX:
            li = lab_all[r0:r1].astype(np.int64)
            ibad = ok_row & ((li < 0) | (li >= C))
            bad[4] += int(ibad.sum())
            ok_row &= ~ibad
            pos = (np.arange(C)[None, :] == li[:, None]).astype(np.int64)
            lbad = np.zeros((n, C), bool)
        else:
            lab = lab_all[r0 * C:r1 * C].reshape(n, C)
            if lab.dtype == np.bool_:
                pos, lbad = lab.astype(np.int64), np.zeros((n, C), bool)
            else:
                pos = (lab == 1).astype(np.int64)
                lbad = ~((lab == 0) | (lab == 1))
        if job.prob_mode == SOFTMAX:
            xd = x.astype(np.float64)
            nonfin = ~np.isfinite(xd)
            rowbad = ok_row & nonfin.any(axis=1)
            bad[2] += int(nonfin[rowbad].sum())
            ok_row &= ~rowbad
            xs = np.where(ok_row[:, None], xd, 0.0)
            e = np.exp(xs - xs.max(axis=1, keepdims=True))
            total = np.cumsum(e, axis=1)[:, -1:]  # sequential sum, as the kernels
            prob = e / total
            pbad = np.zeros((n, C), bool)
            elem_ok = ok_row[:, None] & ~lbad
            b = (prob * np.float64(T - 1)).astype(np.int64)
        else:
            elem_ok = ok_row[:, None] & ~lbad
            bad[3] += int((ok_row[:, None] & lbad).sum())
            if job.prob_mode == SIGMOID:
                xd = x.astype(np.float64)
                pbad = ~np.isfinite(xd)
                bad[2] += int((elem_ok & pbad).sum())
                with np.errstate(over="ignore"):
                    prob = 1.0 / (1.0 + np.exp(-np.where(pbad, 0.0, xd)))
                b = (prob * np.float64(T - 1)).astype(np.int64)
            else:
                isnan = np.isnan(x)
                pbad = ~((x >= 0) & (x <= 1))
                bad[0] += int((elem_ok & isnan).sum())
                bad[1] += int((elem_ok & pbad & ~isnan).sum())
                b = _reference_buckets(np.where(pbad, 0, x), job.pred.dtype, T)
        if job.prob_mode == SOFTMAX:
            bad[3] += int((ok_row[:, None] & lbad).sum())
        keep = elem_ok & ~pbad
        cell = ((np.arange(C)[None, :] * T + b) * 2 + pos)[keep]
        if job.weighted:
            ww = np.broadcast_to(w[:, None], (n, C))[keep]
            state.sums.reshape(-1)[:] += np.bincount(cell, weights=ww, minlength=C * T * 2)
        else:
            state.counts.reshape(-1)[:] += np.bincount(cell, minlength=C * T * 2)
    state.bad += bad
