"""The interface every writer mixin (histogram_logging, pr_curve_logging, image_logging)
writes through. A host class provides ``_write_summary``; tbfast's SummaryWriter also
overrides ``_write_deferred`` to pack on its writer thread."""


from . import _tensor


class SummarySink:
    def __init_subclass__(cls, **kwargs):
        """Every public ``add_*`` method of a writer class (tbfast's SummaryWriter, and
        the sink accelerate() puts on torch's and tensorboardX's writers) checks the
        storage of its tensor arguments before anything reads them
        (:func:`tbfast._tensor.storage_checked`), and runs eagerly under
        ``torch.compile`` (:func:`tbfast._tensor.untraced`): these methods hand tensor
        memory to native code or to torch's packers. ``add_scalar`` is left alone (one
        element, read by ``.item()``), so its hot path pays nothing."""
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            fn = getattr(cls, name)
            if (name.startswith("add_") and name != "add_scalar" and callable(fn)
                    and not getattr(fn, "_tbfast_untraced", False)):
                setattr(cls, name, _tensor.untraced(_tensor.storage_checked(fn)))

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
