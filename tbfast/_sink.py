"""The interface every writer mixin (histogram_logging, pr_curve_logging, image_logging)
writes through. A host class provides ``_write_summary``; tbfast's SummaryWriter also
overrides ``_write_deferred`` to pack on its writer thread."""

import functools
import inspect

from . import _tensor, _wire


class SummarySink:
    def __init_subclass__(cls, **kwargs):
        """Every public ``add_*`` method of a writer class (tbfast's SummaryWriter, and
        the sink accelerate() puts on torch's and tensorboardX's writers) goes through
        :func:`writer_entry`. ``add_scalar`` is left alone, so its hot path pays nothing:
        its encoder checks the tag on its per-tag cache miss, and ``as_scalar`` the
        storage of a one-element tensor before ``.item()``."""
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            fn = getattr(cls, name)
            if (name.startswith("add_") and name != "add_scalar" and callable(fn)
                    and not getattr(fn, "_tbfast_entry", False)):
                setattr(cls, name, writer_entry(fn))

    def _write_summary(self, summary, global_step=None, walltime=None):
        """Write one Summary (message or serialised bytes) at a step and time."""
        raise NotImplementedError

    def _write_summaries(self, summaries, global_step=None, walltime=None):
        for s in summaries:
            self._write_summary(s, global_step, walltime)

    def _write_deferred(self, make_summaries, global_step=None, walltime=None):
        """Write the Summaries ``make_summaries()`` returns. This default runs it now, on
        the caller's thread (waiting for device results); a writer with a queue runs it
        on its own thread once the inputs reached the host."""
        self._write_summaries(make_summaries(), global_step, walltime)


def writer_entry(fn):
    """A writer method's checks on entry, before any work is started or queued: its
    ``tag`` / ``main_tag`` (TypeError naming the parameter, :func:`tbfast._wire.tag_bytes`),
    and the storage of its tensor arguments (:func:`tbfast._tensor.check_arguments`).
    Under ``torch.compile`` it runs eagerly (:func:`tbfast._tensor.untraced`): these
    methods hand tensor memory to native code or to torch's packers."""
    params = inspect.signature(fn).parameters
    names = list(params)
    tag = next((a for a in ("tag", "main_tag") if a in names), None)
    pos = names.index(tag) if tag else -1
    default = params[tag].default if tag else None

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        if tag is not None:
            value = args[pos] if len(args) > pos else kwargs.get(tag, default)
            if type(value) is not str:
                _wire.tag_bytes(value, tag)
        _tensor.check_arguments(args, kwargs, names)
        return fn(*args, **kwargs)

    entry = _tensor.untraced(entry)
    entry._tbfast_entry = True
    return entry
