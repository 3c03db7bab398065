"""Histogram summaries: pure packers (result -> protobuf) and the writer methods.

The proto is torch's (spec 1.3 steps 4-7): buckets trimmed to the first..last non-empty
bucket, preceded by one empty bucket whose limit is the left edge of the first non-empty
one; interior empty buckets kept. No summary metadata, like torch.

Non-finite values: NaN and +-Inf are never bucketed and never fail. Their counts are
written as scalars beside the histogram, ``<tag>/nan_count``, ``<tag>/posinf_count`` and
``<tag>/neginf_count``, at every step where one is non-zero and, once a tag has had
any, at every later step of that tag (so the series shows when they go away). A step
where the tensor has no finite value at all writes only those scalars and no histogram:
TensorBoard would draw an empty histogram as values collapsing to 0, which misleads.
"""

import threading

import numpy as np

from ._sink import SummarySink
from . import _tensor, _wire
from . import histogram as _histogram
from .proto import HistogramProto, Summary

NONFINITE_SUFFIXES = ("nan_count", "posinf_count", "neginf_count")


def _trim(counts, limits, max_value, support=None):
    """torch's support trimming (spec 1.3 steps 4-5): (bucket, bucket_limit) arrays.
    ``support`` = (first, last + 1) non-empty bins when already known."""
    if support is None:
        nonzero = np.flatnonzero(counts)
        support = (int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else (0, 0)
    start, end = support
    if end == 0:  # nothing bucketed: one empty bucket instead of torch's error
        return np.zeros(1), np.array([max_value], dtype=np.float64)
    if start > 0:
        bucket = counts[start - 1:end]
    else:
        bucket = np.concatenate([[0], counts[:end]])
    return bucket.astype(np.float64), np.asarray(limits[start:end + 1], dtype=np.float64)


def histogram_proto(counts, limits, min, max, num, sum, sum_squares):
    """HistogramProto from full bucket counts [B] and limits [B + 1] (host arrays) and
    the statistics, trimmed exactly like torch's make_histogram. With no bucketed value
    (no finite value, or all beyond the outer edges) it writes one empty bucket instead
    of raising like torch."""
    bucket, bucket_limit = _trim(np.asarray(counts), limits, max)
    return HistogramProto(min=min, max=max, num=num, sum=sum, sum_squares=sum_squares,
                          bucket_limit=bucket_limit.tolist(), bucket=bucket.tolist())


def _stats(result):
    counts, limits, stats, nonfinite = result.host()
    num = result.numel - int(nonfinite.sum())
    mn, mx = (float(stats[0]), float(stats[1])) if num else (0.0, 0.0)
    return counts, limits, mn, mx, num, float(stats[2]), float(stats[3])


def histogram_result_proto(result):
    """HistogramProto of a :class:`tbfast.histogram.HistogramResult`."""
    return histogram_proto(*_stats(result))


def histogram_summary_bytes(tag, result):
    """Serialised Summary with one histogram value under ``tag`` (the hot path: wire
    encoding straight from the result's arrays; parses to histogram_summary's message)."""
    counts, limits, mn, mx, num, s, sq = _stats(result)
    bucket, bucket_limit = _trim(counts, limits, mx, result.support)
    return _wire.summary_value(tag, 5, _wire.histogram_proto(mn, mx, num, s, sq, bucket_limit, bucket))


def histogram_summary(tag, result):
    """Summary with one histogram value under ``tag``."""
    return Summary(value=[Summary.Value(tag=tag, histo=histogram_result_proto(result))])


def nonfinite_summary_bytes(tag, counts):
    """Serialised Summary of three scalars ``<tag>/nan_count`` etc. from (nan, +inf, -inf)."""
    return _wire.simple_values([(f"{tag}/{suffix}", float(c)) for suffix, c in zip(NONFINITE_SUFFIXES, counts)])


def histogram_raw_summary(tag, min, max, num, sum, sum_squares, bucket_limits, bucket_counts):
    """torch's histogram_raw: the proto field by field, no validation beyond lengths."""
    if len(bucket_limits) != len(bucket_counts):
        raise ValueError("len(bucket_limits) != len(bucket_counts), see the document.")
    hist = HistogramProto(min=min, max=max, num=num, sum=sum, sum_squares=sum_squares,
                          bucket_limit=list(bucket_limits), bucket=list(bucket_counts))
    return Summary(value=[Summary.Value(tag=tag, histo=hist)])


class HistogramLogging(SummarySink):
    """Writer methods for histograms. The host class provides ``_write_summaries``
    (Summary protos or serialised Summary bytes, all at one step)."""

    ACCELERATED = ("add_histogram", "add_histogram_raw")

    def _nonfinite_tags(self):
        state = self.__dict__.get("_tbfast_nonfinite_tags")
        if state is None:
            state = self.__dict__.setdefault("_tbfast_nonfinite_tags", (set(), threading.Lock()))
        return state

    def _batch_summaries(self, batch):
        """[Summary bytes] for every row of a :class:`tbfast.histogram.HistogramBatch`:
        the statistics of all rows are prepared in a few vectorised steps and each row's
        proto is encoded from byte slices of its support (the hot path of add_histograms)."""
        h = batch.host()
        if batch.max_bins is not None:
            return [s for tag, r in zip(batch.names, batch.results) for s in self._histogram_summaries(tag, r)]
        nonfinite = h["nonfinite"]
        any_nf = nonfinite.any(axis=1)
        num = np.asarray(batch.numels, dtype=np.int64) - nonfinite.sum(axis=1)
        stats = h["stats"]
        mins = np.where(num > 0, stats[:, 0], 0.0).tolist()
        maxs = np.where(num > 0, stats[:, 1], 0.0).tolist()
        sums, sqs, nums = stats[:, 2].tolist(), stats[:, 3].tolist(), num.tolist()
        limits, counts, supports = h["limits"], h["counts"], h["supports"]
        shared = batch.spec.mode == _histogram.EDGES
        lim_all = np.ascontiguousarray(limits[0], dtype="<f8") if shared and limits else None
        seen, lock = self._nonfinite_tags()
        out = []
        for r, tag in enumerate(batch.names):
            if nums[r]:
                start, end = supports[r]
                if end == 0:
                    bucket, lim = np.zeros(1), np.array([maxs[r]], dtype="<f8")
                else:
                    c = counts[r]
                    bucket = c[start - 1:end] if start > 0 else np.concatenate([[0], c[:end]])
                    lim = (lim_all if shared else limits[r])[start:end + 1]
                proto = _wire.histogram_proto(mins[r], maxs[r], nums[r], sums[r], sqs[r], lim,
                                              bucket.astype("<f8"))
                out.append(_wire.summary_value(tag, 5, proto))
            if any_nf[r] or seen:
                with lock:
                    if any_nf[r]:
                        seen.add(tag)
                    write = tag in seen
                if write:
                    out.append(nonfinite_summary_bytes(tag, nonfinite[r].tolist()))
        return out

    def _histogram_summaries(self, tag, result):
        """[Summary bytes] for one result: the histogram (none when no value is finite),
        then the non-finite counts when this tag has ever had any."""
        counts = result.host()[3].tolist()
        out = [histogram_summary_bytes(tag, result)] if result.numel > sum(counts) else []
        seen, lock = self._nonfinite_tags()
        with lock:
            if any(counts):
                seen.add(tag)
            write = tag in seen
        if write:
            out.append(nonfinite_summary_bytes(tag, counts))
        return out

    @staticmethod
    def _start_batches(batches):
        """CPU batches are checked now (bins=int ranges; no wait), so a bad one raises at
        the call; their rows are built on the writer thread, with the packing. Device
        batches start their one host copy."""
        for b in batches:
            if b.device_type == "cpu":
                b.check()
            else:
                b.start_host_copy()
        return batches

    def _write_histogram_batches(self, batches, global_step, walltime):
        """Queue started histogram batches: they are packed on the writer's thread once
        their host copy landed, so this never waits for the GPU. A check that fails there
        (too many bins for the data range) is raised on the writer's next call, flush()
        or close(), naming the tag."""

        for b in batches:  # packed later, on the writer thread: check the tags now
            for tag in b.names:
                if type(tag) is not str:
                    _wire.tag_bytes(tag, "tag")

        def summaries():
            return [s for b in batches for s in self._batch_summaries(b)]

        self._write_deferred(summaries, global_step, walltime)

    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None, max_bins=None, *,
                      group=None) -> None:
        """torch's ``add_histogram``, computed by tbfast (see :func:`tbfast.histogram`).

        values: torch tensor (CPU or CUDA, any dtype tbfast takes), NumPy array or
        sequence. NaN/Inf are counted and written as ``<tag>/nan_count`` etc., never
        fatal. Raises ValueError naming the tag for an empty tensor or invalid bins.
        CUDA input: runs on the current stream; this call never waits for the GPU.
        ``group`` (a torch.distributed group, or True for the world): the histogram of
        the full logical tensor over the group's ranks (a DTensor's shards, or every
        rank's part); every rank calls, rank 0 of the group writes (tbfast.distributed).
        """
        if group is not None:
            from . import distributed

            return distributed.add_histogram(self, tag, values, global_step, bins, walltime, max_bins, group=group)
        try:
            batches = self._start_batches(_histogram.launch([(tag, _tensor.describe(values))], bins=bins,
                                                            max_bins=max_bins))
        except ValueError as exc:
            raise ValueError(f"add_histogram({tag!r}): {exc}") from None
        self._write_histogram_batches(batches, global_step, walltime)

    def add_histogram_raw(self, tag, min, max, num, sum, sum_squares, bucket_limits, bucket_counts,
                          global_step=None, walltime=None) -> None:
        """torch's ``add_histogram_raw``: writes precomputed statistics as given."""
        self._write_summary(histogram_raw_summary(tag, min, max, num, sum, sum_squares, bucket_limits,
                                                  bucket_counts), global_step, walltime)

    def add_histograms(self, named_tensors, global_step=None, walltime=None, bins="tensorflow", max_bins=None,
                       stream=None, group=None):
        """Histograms of many tensors in one backend call per device; one histogram per
        name (the tag). named_tensors: mapping or iterable of (tag, tensor). CUDA
        tensors: one launch sequence and one host copy per device, on ``stream``
        (default: the current stream); this call never waits for the GPU. ``group``:
        see :meth:`add_histogram` (one collective for all tensors)."""
        if group is not None:
            from . import distributed

            return distributed.add_histograms(self, named_tensors, global_step, walltime, bins, max_bins,
                                              group=group, stream=stream)
        named = _histogram.describe_named(named_tensors)
        batches = self._start_batches(_histogram.launch(named, bins=bins, max_bins=max_bins, stream=stream))
        self._write_histogram_batches(batches, global_step, walltime)

    def add_module_histograms(self, module, global_step=None, walltime=None, parameters=True, gradients=True,
                              prefix="", bins="tensorflow", max_bins=None, stream=None, group=None):
        """Histograms of every parameter (tag ``<prefix>parameters/<name>``) and every
        existing gradient (``<prefix>gradients/<name>``) of a ``torch.nn.Module``, all in
        one call per device. Parameters without a gradient are skipped. A sharded module
        (FSDP2 / DTensor parameters) needs ``group``: then every rank calls and the full
        parameters are histogrammed with one collective; rank 0 of the group writes."""
        named = module_named_tensors(module, parameters, gradients, prefix, sharded=group is not None)
        if named:
            self.add_histograms(named, global_step, walltime, bins=bins, max_bins=max_bins, stream=stream,
                                group=group)


def module_named_tensors(module, parameters=True, gradients=True, prefix="", sharded=False, unwrap=False):
    """[(tag, tensor)] of a module's parameters and existing gradients, tags
    ``<prefix>parameters/<name>`` and ``<prefix>gradients/<name>``.

    FSDP1's FlatParameters (``use_orig_params=False``) are expanded into this rank's
    pieces of the original parameters and gradients, named as the model names them and
    never counting the shard padding (:func:`tbfast.distributed.named_parameter_pieces`).
    ``sharded`` (a group is given): the same tags on every rank, so a parameter that
    requires a gradient but has none on this rank (FSDP1's empty local pieces with
    ``use_orig_params=True``) contributes an empty gradient. Without ``sharded``, empty
    local pieces are left out (there is nothing to histogram). ``unwrap``: names without
    the prefixes of DDP, FSDP, checkpoint wrappers and torch.compile (as
    :func:`tbfast.watch` tags them)."""
    from .distributed import named_parameter_pieces

    named = []
    for name, p, grad in named_parameter_pieces(module, unwrap):
        if not sharded and p.numel() == 0:
            continue
        if parameters:
            named.append((f"{prefix}parameters/{name}", p))
        if gradients and grad is not None:
            named.append((f"{prefix}gradients/{name}", grad))
        elif gradients and sharded and p.requires_grad:
            named.append((f"{prefix}gradients/{name}", p.detach().reshape(-1)[:0]))
    return named
