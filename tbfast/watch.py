"""``tbfast.watch(model, writer)``: parameter and gradient histograms every N steps.

A step is a **backward pass**: ``loss.backward()`` (or any autograd pass) in which the
tensor that receives the model's gradients gets its gradient: the first trainable
parameter, or for FSDP1 (both ``use_orig_params`` modes) its first FlatParameter, since
FSDP1 accumulates gradients there and never into the original parameters. One
post-accumulate-grad hook on that tensor counts them; on the steps it does not log, that
hook is all that runs (a counter increment, about a microsecond). With gradient
accumulation, each micro-batch's backward is a step.

On a logging step the hook queues an autograd callback that runs once the whole backward
pass is finished (it queues itself once more, so it runs after the callbacks DDP and FSDP
queue to finish their gradient reduction): every gradient is final, as the optimizer will
see it. Then all parameters and/or gradients go to ``writer.add_histograms`` in one call
(one native call per device, no host sync for CUDA tensors), tagged
``<prefix>parameters/<name>`` and ``<prefix>gradients/<name>`` at ``global_step`` = the
number of backward passes since ``watch``. Names are the model's own: the prefixes that
DDP (``module.``), FSDP (``_fsdp_wrapped_module.``), activation checkpointing
(``_checkpoint_wrapped_module.``) and ``torch.compile`` (``_orig_mod.``) add are removed,
and FSDP1's FlatParameters are logged per original parameter
(:func:`tbfast.distributed.named_parameter_pieces`; their padding is never counted).

Sharded parameters (FSDP2's DTensors, FSDP1's pieces): with ``group`` (``True`` for the
world, or a process group) every rank takes part in one collective and rank 0 writes the
histograms of the full tensors (:func:`tbfast.distributed.add_histograms`; the writer may
be None on the other ranks). Without ``group`` each rank logs the histogram of its local
shard (ranks holding none of a parameter leave it out).
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


def _gradient_receiver(model):
    """The tensor whose gradient accumulation marks a backward pass: FSDP1's first
    FlatParameter (its units' ``_handle.flat_param``; with ``use_orig_params=True`` the
    original parameters never receive a gradient themselves), else the first parameter
    that requires grad (a FlatParameter itself with ``use_orig_params=False``; a DTensor
    under FSDP2). None when there is none."""
    for module in model.modules():
        flat = getattr(getattr(module, "_handle", None), "flat_param", None)
        if flat is not None and getattr(flat, "_is_flat_param", False) and flat.requires_grad:
            return flat
    return next((p for p in model.parameters() if p.requires_grad), None)


class Watch:
    """What :func:`watch` installed on a model. ``steps``: backward passes counted so far;
    ``remove()`` (or :func:`unwatch`) takes the hook off."""

    def __init__(self, model, writer, log, log_freq, prefix, bins, max_bins, group=None):
        self.writer, self.log, self.log_freq, self.prefix = writer, log, log_freq, prefix
        self.bins, self.max_bins, self.group = bins, max_bins, group
        self.steps = 0
        self._model = weakref.ref(model)
        hooked = _gradient_receiver(model)
        if hooked is None:
            raise ValueError("watch: the model has no parameter that requires grad (and no FSDP FlatParameter), so "
                             "there is no tensor receiving gradients to count backward passes on")
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
        from .histogram_logging import module_named_tensors

        model = self._model()
        if model is None:
            return
        params, grads = self.log in ("parameters", "all"), self.log in ("gradients", "all")
        named = module_named_tensors(model, params, grads, self.prefix, sharded=self.group is not None, unwrap=True)
        if self.group is None:  # each rank its local shard; nothing where it holds none
            local = _local_shard()
            named = [(tag, t) for tag, t in ((tag, local(t.detach())) for tag, t in named) if t.numel()]
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
    model without a tensor that receives gradients (no trainable parameter).
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
