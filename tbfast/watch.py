"""``tbfast.watch(model, writer)``: parameter and gradient histograms every N steps.

A step is a **backward pass**: ``loss.backward()`` (or any autograd pass) in which the
model's first trainable parameter receives its gradient. One post-accumulate-grad hook on
that parameter counts them; on the steps it does not log, that hook is all that runs (a
counter increment, about a microsecond). With gradient accumulation, each micro-batch's
backward is a step.

On a logging step the hook queues an autograd callback that runs once the whole backward
pass is finished (it queues itself once more, so it runs after the callbacks DDP and FSDP
queue to finish their gradient reduction): every gradient is final, as the optimizer will
see it. Then all parameters and/or gradients go to ``writer.add_histograms`` in one call
(one native call per device, no host sync for CUDA tensors), tagged
``<prefix>parameters/<name>`` and ``<prefix>gradients/<name>`` at ``global_step`` = the
number of backward passes since ``watch``. Names are the model's own: the prefixes that
DDP (``module.``), FSDP (``_fsdp_wrapped_module.``), activation checkpointing
(``_checkpoint_wrapped_module.``) and ``torch.compile`` (``_orig_mod.``) add are removed.

Sharded parameters (FSDP2's DTensors): with ``group`` (``True`` for the world, or a
process group) every rank takes part in one collective and rank 0 writes the histograms of
the full tensors (:func:`tbfast.distributed.add_histograms`; the writer may be None on the
other ranks). Without ``group`` each rank logs the histogram of its local shard.
"""

import weakref

_LOG = ("gradients", "parameters", "all")
_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
_watches = weakref.WeakKeyDictionary()  # model -> Watch


def unwrapped_name(name):
    """A parameter name without the prefixes DDP, FSDP, checkpoint wrappers and
    torch.compile add: ``module._fsdp_wrapped_module.fc.weight`` -> ``fc.weight``."""
    while name.startswith("module."):
        name = name[len("module."):]
    for w in _WRAPPERS:
        name = name.replace(w, "")
    return name


def _local_shard():
    """A function giving a DTensor's local shard and any other tensor as it is."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return lambda t: t
    return lambda t: t.to_local() if isinstance(t, DTensor) else t


class Watch:
    """What :func:`watch` installed on a model. ``steps``: backward passes counted so far;
    ``remove()`` (or :func:`unwatch`) takes the hook off."""

    def __init__(self, model, writer, log, log_freq, prefix, bins, max_bins, group=None):
        self.writer, self.log, self.log_freq, self.prefix = writer, log, log_freq, prefix
        self.bins, self.max_bins, self.group = bins, max_bins, group
        self.steps = 0
        self._model = weakref.ref(model)
        hooked = next((p for p in model.parameters() if p.requires_grad), None)
        if hooked is None:
            raise ValueError("watch: the model has no parameter that requires grad, so it has no backward pass to count")
        self._handle = hooked.register_post_accumulate_grad_hook(self._on_grad)

    def _on_grad(self, _param):
        self.steps += 1
        if self.steps % self.log_freq:
            return
        from torch.autograd import Variable

        step = self.steps
        engine = Variable._execution_engine
        # Runs after this backward's other final callbacks (DDP/FSDP reduction), which may
        # be queued after this one: the first callback queues the second at the end.
        engine.queue_callback(lambda: engine.queue_callback(lambda: self._log(step)))

    def _log(self, step):
        model = self._model()
        if model is None:
            return
        params, grads = self.log in ("parameters", "all"), self.log in ("gradients", "all")
        local = _local_shard() if self.group is None else (lambda t: t)
        named = []
        for name, p in model.named_parameters():
            name = unwrapped_name(name)
            if params:
                named.append((f"{self.prefix}parameters/{name}", local(p.detach())))
            if grads and p.grad is not None:
                named.append((f"{self.prefix}gradients/{name}", local(p.grad)))
        if not named:
            return
        if self.group is not None:  # one collective; rank 0 of the group writes
            from . import distributed

            distributed.add_histograms(self.writer, named, step, bins=self.bins, max_bins=self.max_bins,
                                       group=self.group)
        elif hasattr(self.writer, "add_histograms"):
            self.writer.add_histograms(named, step, bins=self.bins, max_bins=self.max_bins)
        else:  # a torch / tensorboardX writer: one call (and one host copy) per tensor
            for tag, t in named:
                self.writer.add_histogram(tag, t, step, bins=self.bins, max_bins=self.max_bins)

    def remove(self):
        self._handle.remove()
        model = self._model()
        if model is not None and _watches.get(model) is self:
            del _watches[model]


def watch(model, writer, log="gradients", log_freq=100, prefix="", bins="tensorflow", max_bins=None, group=None):
    """Log histograms of ``model``'s gradients (``log="gradients"``), parameters
    (``"parameters"``) or both (``"all"``) every ``log_freq`` backward passes.

    model: a ``torch.nn.Module`` (plain, DDP- or FSDP-wrapped, compiled); writer: a
    :class:`tbfast.SummaryWriter` (one fused ``add_histograms`` call per logging step), or
    a torch / tensorboardX writer (one ``add_histogram`` per tensor, on the host);
    bins / max_bins as in ``add_histogram``; group: histograms of the full tensors of a
    sharded model, rank 0 writing (see the module docstring, also for what a step is). Watching a model again replaces the earlier watch.
    Returns the :class:`Watch`. Raises ValueError for a bad ``log`` or ``log_freq``, or a
    model without trainable parameters.
    """
    if log not in _LOG:
        raise ValueError(f"log must be one of {', '.join(map(repr, _LOG))}, got {log!r}")
    if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
        raise ValueError(f"log_freq must be an int >= 1, got {log_freq!r}")
    if not (hasattr(writer, "add_histograms") or hasattr(writer, "add_histogram") or
            (writer is None and group is not None)):
        raise TypeError(f"writer must be a SummaryWriter (tbfast, torch or tensorboardX), got {type(writer).__name__}")
    unwatch(model)
    w = _watches[model] = Watch(model, writer, log, log_freq, prefix, bins, max_bins, group)
    return w


def unwatch(model):
    """Remove :func:`watch`'s hook from ``model``; no-op when it is not watched."""
    w = _watches.pop(model, None)
    if w is not None:
        w._handle.remove()
