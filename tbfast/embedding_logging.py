"""Embeddings for TensorBoard's projector: ``add_embedding``.

Writes what torch's writer writes, file for file, under
``<log_dir>/<step %05d>/<tag, with % / \\ escaped>/``: ``tensors.tsv`` (one row per
point, values as Python's ``str``), ``metadata.tsv`` (labels, or a header plus
columns), ``sprite.png`` (the label images), and the writer's accumulated
``<log_dir>/projector_config.pbtxt``.

Faster than torch where it is heavy:
- the sprite is laid out by tbfast's native grid (``image._grid``) from uint8 pixels
  and PNG-encoded natively; its pixels equal torch's (which scales by 255 in float64,
  as here, then truncates);
- ``tensors.tsv`` is formatted from one ``tolist()`` instead of an ``.item()`` per value
  (the same strings).

The projector config is TensorBoard's ``ProjectorConfig`` proto in text format, so this
method needs tensorboard (``pip install 'tbfast[tensorboard]'``).
"""

import math
import os

import numpy as np

from . import _tensor
from . import image as _image
from . import png as _png
from ._optional import require


def encode_tag(rawstr):
    """torch's escaping of an embedding tag for a directory name: % / \\ as %xx."""
    return rawstr.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def as_numpy(x):
    """torch's make_np for an embedding matrix: tensors to host NumPy (bfloat16 through
    float16, as torch does), arrays as they are, numbers as one-element arrays."""
    if isinstance(x, np.ndarray):
        return x
    if np.isscalar(x):
        return np.array([x])
    if _tensor.is_torch_tensor(x):
        import torch

        _tensor.check_tensor(x, "mat")  # subclasses, nested layouts, truncated storage: before any copy
        if x.dtype == torch.bfloat16:
            x = x.to(torch.float16)
        return x.detach().cpu().numpy()
    raise NotImplementedError(f"Got {type(x)}, but numpy array or torch tensor are expected.")


def tsv_rows(mat):
    """tensors.tsv of a 2-D array: tab-separated ``str`` of each value, one line per row."""
    return "".join("\t".join(map(str, row)) + "\n" for row in mat.tolist()).encode("utf-8")


def metadata_tsv(metadata, metadata_header=None):
    """metadata.tsv as torch writes it: one label per line, or a header line plus one
    tab-separated line per point."""
    if not metadata_header:
        lines = [str(x) for x in metadata]
    else:
        if len(metadata_header) != len(metadata[0]):
            raise AssertionError("len of header must be equal to the number of columns in metadata")
        lines = ["\t".join(str(e) for e in row) for row in [metadata_header] + list(metadata)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def label_tensor(label_img):
    """``label_img`` as a detached torch tensor, checked by the one validation place
    (:func:`tbfast._tensor.describe`) before its shape is read or its pixels copied."""
    return _tensor.describe(label_img, "label_img", layout="strided").owner.detach()


def sprite_pixels(label_img):
    """The sprite torch makes from ``label_img`` [N, C, H, W] (C = 1 or 3): a square
    uint8 RGB image of side ``W * ceil(sqrt(N))``, images row-major without padding,
    pixels ``uint8(clip(float64(x) * 255, 0, 255))`` (uint8 input scaled too, as in
    torch). Raises ValueError when the grid is taller than that square (torch fails
    there too), and what :func:`tbfast._tensor.describe` raises for inputs it cannot read
    (nested layouts, subclasses, functorch wrappers, truncated storage)."""
    import torch

    x = label_tensor(label_img)
    if x.dtype == torch.bfloat16:
        x = x.to(torch.float16)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"label_img must be [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    u8 = torch.nan_to_num(x.to(torch.float64) * 255, nan=0.0).clamp_(0, 255).to(torch.uint8)
    nrow = math.ceil(x.shape[0] ** 0.5)
    plan = _image.plan_grid(u8, nrow=nrow, padding=0, dataformats="NCHW", gray_to_rgb=True)
    grid = _image.run_plan(plan).cpu().numpy()
    side = grid.shape[1]
    if grid.shape[0] > side:
        raise ValueError(f"sprite grid of {grid.shape[0]} rows does not fit the {side}x{side} square torch makes "
                         f"(images taller than wide)")
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:grid.shape[0]] = grid
    return square


class EmbeddingLogging:
    """Writer method for embeddings. The host class provides ``_get_file_writer()``."""

    def add_embedding(self, mat, metadata=None, label_img=None, global_step=None, tag="default",
                      metadata_header=None) -> None:
        """torch's ``add_embedding``: ``mat`` [N, D] (tensor or array), optional
        ``metadata`` (N labels, or N rows of columns with ``metadata_header``) and
        ``label_img`` [N, C, H, W] tensor; written for TensorBoard's projector under
        ``<log_dir>/<global_step %05d>/<tag>``. Raises AssertionError for mismatched
        lengths or a non-2-D ``mat``, like torch."""
        projector = require("tensorboard.plugins.projector.projector_config_pb2", "add_embedding")
        text_format = require("google.protobuf.text_format", "add_embedding")
        mat = as_numpy(mat)
        if label_img is not None:
            label_img = label_tensor(label_img)  # checked before anything is written
        if global_step is None:
            global_step = 0
        subdir = f"{str(global_step).zfill(5)}/{encode_tag(tag)}"
        logdir = self._get_file_writer().get_logdir()
        save_path = os.path.join(logdir, subdir)
        if os.path.exists(save_path):
            if os.path.isdir(save_path):
                print("warning: Embedding dir exists, did you set global_step for add_embedding()?")
            else:
                raise NotADirectoryError(f"Path: `{save_path}` exists, but is a file. Cannot proceed.")
        else:
            os.makedirs(save_path)
        if metadata is not None:
            if mat.shape[0] != len(metadata):
                raise AssertionError("#labels should equal with #data points")
            _write(os.path.join(save_path, "metadata.tsv"), metadata_tsv(metadata, metadata_header))
        if label_img is not None:
            if mat.shape[0] != label_img.shape[0]:
                raise AssertionError("#images should equal with #data points")
            _write(os.path.join(save_path, "sprite.png"), _png.encode_png(sprite_pixels(label_img)))
        if mat.ndim != 2:
            raise AssertionError("mat should be 2D, where mat.size(0) is the number of data points")
        _write(os.path.join(save_path, "tensors.tsv"), tsv_rows(mat))

        info = projector.EmbeddingInfo(tensor_name=f"{tag}:{str(global_step).zfill(5)}",
                                       tensor_path=os.path.join(subdir, "tensors.tsv"))
        if metadata is not None:
            info.metadata_path = os.path.join(subdir, "metadata.tsv")
        if label_img is not None:
            info.sprite.image_path = os.path.join(subdir, "sprite.png")
            info.sprite.single_image_dim.extend([label_img.size(3), label_img.size(2)])
        config = self.__dict__.get("_projector_config")
        if config is None:
            config = self._projector_config = projector.ProjectorConfig()
        config.embeddings.extend([info])
        _write(os.path.join(logdir, "projector_config.pbtxt"), text_format.MessageToString(config).encode("utf-8"))


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
