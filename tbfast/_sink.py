"""The interface every writer mixin (histogram_logging, pr_curve_logging, image_logging)
writes through. A host class provides ``_write_summary``; tbfast's SummaryWriter also
overrides ``_write_deferred`` to pack on its writer thread."""


class SummarySink:
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
