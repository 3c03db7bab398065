"""Figures, images with boxes, audio, video and meshes.

``add_figure`` renders with matplotlib's Agg canvas exactly as torch does (RGBA buffer,
alpha dropped) and encodes the pixels with tbfast's native PNG encoder; a list of figures
is gridded like torch's ``add_images`` (8 per row, no padding). The pixels equal torch's;
the PNG bytes differ (another encoder). Needs matplotlib (``pip install 'tbfast[figures]'``).

The others are made by torch's own packers (``torch.utils.tensorboard.summary``), so the
summaries equal torch's; they need tensorboard (``tbfast[tensorboard]``), and
``add_video`` also moviepy before 2.0 (``tbfast[video]``), whose ``moviepy.editor`` torch's
GIF encoder uses.
"""

from __future__ import annotations

import numpy as np

from ._optional import require, torch_summary
from .image_logging import image_summary, torch_image_pixels


def figure_rgb(figure, close=True):
    """uint8 (H, W, 3) pixels of a matplotlib figure, rendered as torch renders it
    (``FigureCanvasAgg(figure).draw()``, RGBA buffer without alpha). ``close`` closes
    the figure with ``pyplot.close``."""
    plt = require("matplotlib.pyplot", "add_figure")
    backend_agg = require("matplotlib.backends.backend_agg", "add_figure")
    canvas = backend_agg.FigureCanvasAgg(figure)
    canvas.draw()
    data = np.frombuffer(canvas.buffer_rgba(), dtype=np.uint8)
    w, h = figure.canvas.get_width_height()
    rgb = data.reshape(h, w, 4)[:, :, :3]
    if close:
        plt.close(figure)
    return rgb


class MediaLogging:
    """Writer methods for figures, boxes, audio, video and meshes. The host class
    provides ``_write_summary`` and ``image_png_level``."""

    def add_figure(self, tag: str, figure: Figure | list[Figure], global_step: int | None = None, close: bool = True,
                   walltime: float | None = None) -> None:
        """torch's ``add_figure``: one matplotlib figure, or a list of figures of one size
        gridded 8 per row. Pixels equal torch's; PNG by tbfast's encoder."""
        if isinstance(figure, list):
            pixels = torch_image_pixels(np.stack([figure_rgb(f, close) for f in figure]), "NHWC")
        else:
            pixels = figure_rgb(figure, close)
        self._write_summary(image_summary(tag, pixels, self.image_png_level), global_step, walltime)

    def add_image_with_boxes(self, tag, img_tensor, box_tensor, global_step=None, walltime=None, rescale=1,
                             dataformats="CHW", labels=None) -> None:
        """torch's ``add_image_with_boxes``: boxes [N, 4] (xmin, ymin, xmax, ymax) drawn
        in red by torch's packer (PIL), optional labels (one per box, else ignored)."""
        if labels is not None:
            if isinstance(labels, str):
                labels = [labels]
            if len(labels) != box_tensor.shape[0]:
                labels = None
        summary = torch_summary("add_image_with_boxes").image_boxes(tag, img_tensor, box_tensor, rescale=rescale,
                                                                    dataformats=dataformats, labels=labels)
        self._write_summary(summary.SerializeToString(), global_step, walltime)

    def add_audio(self, tag, snd_tensor, global_step=None, sample_rate=44100, walltime=None) -> None:
        """torch's ``add_audio``: a 1-D clip in [-1, 1] (squeezed; louder is clipped),
        written as 16-bit mono WAV."""
        summary = torch_summary("add_audio").audio(tag, snd_tensor, sample_rate=sample_rate)
        self._write_summary(summary.SerializeToString(), global_step, walltime)

    def add_video(self, tag, vid_tensor, global_step=None, fps=4, walltime=None) -> None:
        """torch's ``add_video``: [N, T, C, H, W] (float in [0, 1] or uint8) as one GIF
        of the N videos gridded. Raises ImportError without moviepy < 2 (torch then
        prints a message and writes an empty value)."""
        summary = torch_summary("add_video")
        require("moviepy.editor", "add_video (moviepy < 2, the version torch's encoder uses)")
        self._write_summary(summary.video(tag, vid_tensor, fps).SerializeToString(), global_step, walltime)

    def add_mesh(self, tag, vertices, colors=None, faces=None, config_dict=None, global_step=None, walltime=None) -> None:
        """torch's ``add_mesh``: vertices [B, N, 3], optional colors [B, N, 3] (uint8)
        and faces [B, F, 3], for TensorBoard's mesh plugin."""
        summary = torch_summary("add_mesh").mesh(tag, vertices, colors, faces, config_dict)
        self._write_summary(summary.SerializeToString(), global_step, walltime)
