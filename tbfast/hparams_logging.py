"""Hyperparameters: ``add_hparams``.

The three session messages (experiment, session start, session end) are made by torch's
own packer (``torch.utils.tensorboard.summary.hparams``, TensorBoard's hparams protos),
so they equal torch's; this needs tensorboard (``pip install 'tbfast[tensorboard]'``).
As in torch, they and the metrics go to a sub-run ``<log_dir>/<run_name>`` written by a
new writer that is closed at once (default run name: ``str(time.time())``).
"""

import os
import time

from ._optional import torch_summary


class HparamsLogging:
    """Writer method for hyperparameters. The host class provides
    ``_get_file_writer()``, ``_write_summaries`` and ``add_scalar``."""

    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None, global_step=None) -> None:
        """torch's ``add_hparams``: ``hparam_dict`` values bool, str, int, float or None
        (others as their str), ``metric_dict`` name -> number. Raises TypeError when either
        is not a dict, like torch."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        exp, ssi, sei = torch_summary("add_hparams").hparams(hparam_dict, metric_dict, hparam_domain_discrete)
        if not run_name:
            run_name = str(time.time())
        logdir = os.path.join(self._get_file_writer().get_logdir(), run_name)
        from .writer import SummaryWriter

        with SummaryWriter(log_dir=logdir) as sub:
            for summary in (exp, ssi, sei):
                sub._write_summaries([summary.SerializeToString()], global_step)
            for k, v in metric_dict.items():
                sub.add_scalar(k, v, global_step)
