"""Custom-scalars layouts: ``add_custom_scalars`` and its multiline / margin shortcuts.

The layout summary (tag ``custom_scalars__config__``, a DT_STRING tensor holding a
TensorBoard ``Layout`` proto) is made by torch's own packer, so it equals torch's; this
needs tensorboard (``pip install 'tbfast[tensorboard]'``). Written without a step, as
torch does.
"""

from ._optional import torch_summary


def custom_scalars_bytes(layout):
    """Serialised layout Summary of ``{category: {title: ["Multiline" | "Margin", tags]}}``."""
    return torch_summary("add_custom_scalars").custom_scalars(layout).SerializeToString()


class CustomScalarsLogging:
    """Writer methods for custom-scalars layouts. The host class provides ``_write_summary``."""

    def add_custom_scalars_multilinechart(self, tags, category="default", title="untitled") -> None:
        """One multiline chart ``title`` in ``category`` showing the scalar ``tags``."""
        self._write_summary(custom_scalars_bytes({category: {title: ["Multiline", tags]}}))

    def add_custom_scalars_marginchart(self, tags, category="default", title="untitled") -> None:
        """One margin chart: ``tags`` = [value, lower, upper]. AssertionError otherwise."""
        if len(tags) != 3:
            raise AssertionError(f"Expected 3 tags, got {len(tags)}.")
        self._write_summary(custom_scalars_bytes({category: {title: ["Margin", tags]}}))

    def add_custom_scalars(self, layout) -> None:
        """The whole layout: ``{category: {title: ["Multiline" | "Margin", tags]}}``."""
        self._write_summary(custom_scalars_bytes(layout))
