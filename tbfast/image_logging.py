"""Image summaries: pure packers (uint8 pixels -> protobuf) and the writer methods.

The proto is torch's (spec 1.6): one ``Summary.Value`` with ``Summary.Image(height,
width, colorspace=channels, encoded_image_string=PNG)`` and no metadata (TensorBoard
gives every ``image`` value the images plugin's metadata itself, spec 8).

``add_image`` / ``add_images`` reproduce torch's pixels exactly: 4-letter formats are
gridded 8 per row without padding, 1-channel images become RGB, floats are multiplied by
255 in float32, clipped and truncated, uint8 is kept. Beyond torch, 4-channel batches
are accepted by ``add_images`` (RGBA grid, as tensorboardX does; torch raises), and
NaN pixels are written as 0. ``add_image_grid`` is torchvision's ``make_grid`` with
padding and normalisation; there 1-channel input stays a grayscale PNG.

PNG: :func:`tbfast.png.encode_png` with its defaults; a writer may set the attribute
``image_png_level`` to trade speed for size: 0-1 use tbfast's native encoder (1, the
default, compresses), 2-9 zlib at that level.
"""

from ._sink import SummarySink
from . import _device, _tensor
from . import image as _image
from . import png as _png
from .proto import Summary


def image_proto(hwc_uint8, level=None):
    """``Summary.Image`` of a uint8 ``(H, W, C)`` (or ``(H, W)``) image, PNG-encoded;
    C = 1 gives a grayscale PNG, 3 RGB, 4 RGBA. CUDA tensors are copied to the host."""
    png = _png.encode_png(hwc_uint8, level=level)
    shape = tuple(hwc_uint8.shape)
    channels = shape[2] if len(shape) == 3 else 1
    return Summary.Image(height=shape[0], width=shape[1], colorspace=channels, encoded_image_string=png)


def image_summary(tag, hwc_uint8, level=None):
    """Summary with one image value under ``tag`` (see :func:`image_proto`)."""
    return Summary(value=[Summary.Value(tag=tag, image=image_proto(hwc_uint8, level))])


def encoded_image_summary(tag, png_bytes, height, width, channels):
    """Summary of an already encoded image (PNG or any format TensorBoard shows)."""
    img = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png_bytes)
    return Summary(value=[Summary.Value(tag=tag, image=img)])


def torch_image_pixels(img_tensor, dataformats):
    """The uint8 HWC pixels torch's ``image()`` would encode for ``img_tensor`` in
    ``dataformats`` (2, 3 or 4 letters): 4 letters are gridded 8 per row, no padding;
    1 channel is repeated to RGB. Raises ValueError/TypeError like :func:`tbfast.image_grid`."""
    fmt = _image._check_format(dataformats)
    plan = _image.plan_grid(img_tensor, nrow=8, padding=0, dataformats=fmt, gray_to_rgb=True)
    return _image.run_plan(plan)


class ImageLogging(SummarySink):
    """Writer methods for images. The host class provides ``_write_deferred``: the uint8
    grid is built on the input's device in the calling thread (CUDA: on the current
    stream, never waited for), copied to the host once, and PNG-encoded and packed on the
    writer's thread."""

    ACCELERATED = ("add_image", "add_images")
    image_png_level = None  # PNG level (0-1 native encoder, 2-9 zlib); None: tbfast.png.DEFAULT_LEVEL

    def _write_image(self, tag, pixels, global_step, walltime):
        level = self.image_png_level
        copy = None
        if _tensor.is_torch_tensor(pixels) and pixels.device.type == "cuda":
            copy = _device.HostCopy([pixels])  # one asynchronous copy of the uint8 grid

        def summaries():
            return [image_summary(tag, copy.wait()[0] if copy is not None else pixels, level)]

        self._write_deferred(summaries, global_step, walltime)

    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW") -> None:
        """torch's ``add_image``: one image, ``dataformats`` CHW (default), HWC, HW, ...;
        floats in [0, 1] (scaled by 255, clipped), uint8 as is. Pixels equal torch's."""
        pixels = torch_image_pixels(img_tensor, dataformats)
        self._write_image(tag, pixels, global_step, walltime)

    def add_images(self, tag, img_tensor, global_step=None, walltime=None, dataformats="NCHW") -> None:
        """torch's ``add_images``: a batch (NCHW by default, or a list of CHW images)
        gridded 8 per row with no padding. Pixels equal torch's."""
        pixels = torch_image_pixels(img_tensor, dataformats)
        self._write_image(tag, pixels, global_step, walltime)

    def add_image_grid(self, tag, images, global_step=None, nrow=8, padding=2, normalize=False, value_range=None,
                       scale_each=False, pad_value=0.0, dataformats="NCHW", walltime=None):
        """torchvision's ``make_grid`` of ``images`` (see :func:`tbfast.image_grid`),
        converted like torch's ``add_image`` and written as one image."""
        pixels = _image.image_grid(images, nrow=nrow, padding=padding, normalize=normalize, value_range=value_range,
                                   scale_each=scale_each, pad_value=pad_value, dataformats=dataformats)
        self._write_image(tag, pixels, global_step, walltime)
