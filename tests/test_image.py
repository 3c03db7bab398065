"""tbfast.image_grid and the image writer methods against naive references from the spec
(tests/oracle_image.py), torch's own image summaries, and torchvision where importable.
CPU only; every backend that can run is tested."""

import glob
import io
import warnings

import numpy as np
import pytest
import torch

from tbfast import backends
from tbfast import image as tbimage
from tbfast import image_logging

import oracle_image as oracle
from conftest import require_backend

PIL = pytest.importorskip("PIL.Image")

BACKENDS = backends.BACKENDS
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DTYPES = FLOATS + [torch.uint8]


def grid(images, backend, **kw):
    require_backend("image_grid", backend)
    gray = kw.pop("gray_to_rgb", False)
    plan = tbimage.plan_grid(images, gray_to_rgb=gray, **kw)
    out = tbimage.run_plan(plan, backend=backend)
    assert out.dtype == torch.uint8 and out.shape == plan.out_shape
    return out.numpy()


def make_images(shape, dtype, seed=0, lo=-0.2, hi=1.2):
    """Random images with a share of values exactly on k/255 boundaries."""
    rng = np.random.default_rng(seed)
    if dtype == torch.uint8:
        return torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
    x = rng.uniform(lo, hi, shape)
    mask = rng.random(shape) < 0.3
    x[mask] = rng.integers(0, 256, mask.sum()) / 255.0
    return torch.from_numpy(x).to(dtype)


def decode(png_bytes):
    return np.asarray(PIL.open(io.BytesIO(png_bytes)))


# ---------------------------------------------------------------- image_grid vs oracle --


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [
    dict(),
    dict(nrow=3),
    dict(nrow=20),
    dict(padding=0),
    dict(padding=5, pad_value=0.7),
    dict(normalize=True),
    dict(normalize=True, scale_each=True),
    dict(normalize=True, value_range=(-0.1, 0.9)),
    dict(normalize=True, value_range=(0.2, 0.3), scale_each=True, pad_value=0.5),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_grid_matches_oracle(backend, dtype, kw):
    x = make_images((7, 3, 5, 6), dtype, seed=1)
    if dtype == torch.uint8 and not kw.get("normalize") and kw.get("pad_value"):
        kw = dict(kw, pad_value=200)
    np.testing.assert_array_equal(grid(x, backend, **kw), oracle.expected_grid(x, **kw))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels(backend, dtype, channels):
    x = make_images((5, channels, 4, 3), dtype, seed=channels)
    got = grid(x, backend, nrow=2)
    assert got.shape[2] == channels
    np.testing.assert_array_equal(got, oracle.expected_grid(x, nrow=2))
    rgb = grid(x, backend, nrow=2, gray_to_rgb=True)
    if channels == 1:
        np.testing.assert_array_equal(rgb, np.repeat(got, 3, axis=2))
    else:
        np.testing.assert_array_equal(rgb, got)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_values_on_k_over_255(backend, dtype):
    k = torch.arange(256, dtype=torch.float64)
    vals = torch.cat([k / 255, (k + 0.5) / 255, k / 255 - 1e-9, torch.tensor([-1.0, 2.0, -0.0, 1e30, -1e30])])
    x = vals.to(dtype).reshape(1, 1, 1, -1)
    want = oracle.expected_grid(x)
    np.testing.assert_array_equal(grid(x, backend), want)
    if dtype != torch.float16:  # float32(k/255) * 255 rounds back to exactly k
        np.testing.assert_array_equal(want[0, :256, 0], np.arange(256))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite(backend):
    x = torch.tensor([[[[float("nan"), float("inf"), -float("inf"), 0.5, 1.5, -0.5]]]])
    np.testing.assert_array_equal(grid(x, backend)[0, :, 0], [0, 255, 0, 127, 255, 0])
    # normalize ranges use finite values only; NaN -> 0, +-inf clamp to the range ends
    y = torch.tensor([[[[float("nan"), float("inf"), -float("inf"), 0.0, 2.0, 1.0]]]])
    np.testing.assert_array_equal(grid(y, backend, normalize=True)[0, :, 0], [0, 255, 0, 0, 255, 127])
    z = torch.full((2, 1, 1, 2), float("nan"))
    z[1] = 3.0
    np.testing.assert_array_equal(grid(z, backend, normalize=True, scale_each=True, padding=0)[0, :, 0],
                                  [0, 0, 0, 0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt,shape", [
    ("NCHW", (3, 3, 4, 5)), ("NHWC", (3, 4, 5, 3)), ("CHW", (3, 4, 5)), ("HWC", (4, 5, 4)), ("HW", (4, 5)),
    ("WHCN", (5, 4, 1, 9)), ("chw", (1, 2, 2)), ("WH", (1, 1)),
])
def test_layouts(backend, dtype, fmt, shape):
    x = make_images(shape, dtype, seed=len(shape))
    kw = dict(nrow=4, padding=1, dataformats=fmt)
    np.testing.assert_array_equal(grid(x, backend, **kw), oracle.expected_grid(x, **kw))


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_shapes_and_views(backend):
    for n, h, w in [(1, 1, 1), (9, 1, 1), (2, 1, 7), (17, 3, 2)]:
        x = make_images((n, 3, h, w), torch.float32, seed=n)
        for kw in (dict(), dict(nrow=5, padding=3, pad_value=1.0), dict(normalize=True)):
            np.testing.assert_array_equal(grid(x, backend, **kw), oracle.expected_grid(x, **kw))
    base = make_images((6, 3, 10, 12), torch.float32, seed=3)
    for view in (base.contiguous(memory_format=torch.channels_last), base[::2, :, 1::3, ::2], base.flip(3),
                 base.transpose(2, 3)):
        np.testing.assert_array_equal(grid(view, backend, nrow=2), oracle.expected_grid(view, nrow=2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_image_has_no_padding(backend):
    x = make_images((1, 3, 4, 5), torch.float32)
    assert grid(x, backend, padding=7).shape == (4, 5, 3)
    assert grid(x[0], backend, padding=7, dataformats="CHW").shape == (4, 5, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_list_input(backend):
    xs = [make_images((3, 4, 5), torch.float32, seed=i) for i in range(5)]
    np.testing.assert_array_equal(grid(xs, backend, nrow=2), oracle.expected_grid(xs, nrow=2))
    hwc = [x.permute(1, 2, 0) for x in xs]
    np.testing.assert_array_equal(grid(hwc, backend, nrow=2, dataformats="NHWC"), oracle.expected_grid(xs, nrow=2))


def test_numpy_in_numpy_out():
    x = make_images((4, 3, 3, 3), torch.float32).numpy()
    out = tbimage.image_grid(x, nrow=2)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, oracle.expected_grid(torch.from_numpy(x), nrow=2))
    flipped = x[:, :, ::-1]  # negative strides
    np.testing.assert_array_equal(tbimage.image_grid(flipped), oracle.expected_grid(torch.from_numpy(flipped.copy())))


def test_public_api_torch_out():
    import tbfast

    x = make_images((4, 3, 3, 3), torch.float32)
    out = tbfast.image_grid(x)
    assert isinstance(out, torch.Tensor) and out.device == x.device and out.dtype == torch.uint8


def test_integer_and_bool_inputs_scale_like_torch():
    x = torch.tensor([[[[0, 1, 2, -1]]]], dtype=torch.int64)
    np.testing.assert_array_equal(tbimage.image_grid(x)[0, :, 0].numpy(), [0, 255, 255, 0])
    b = torch.tensor([[[True, False]]])
    np.testing.assert_array_equal(tbimage.image_grid(b, dataformats="CHW")[0, :, 0].numpy(), [255, 0])


@pytest.mark.parametrize("args,kw,exc,match", [
    ((torch.zeros(0, 3, 4, 4),), {}, ValueError, "no images"),
    (([],), {}, ValueError, "empty list"),
    ((torch.zeros(2, 2, 4, 4),), {}, ValueError, "1, 3 or 4 channels"),
    ((torch.zeros(2, 4, 4, 5),), dict(dataformats="NHWC"), ValueError, "1, 3 or 4 channels"),
    ((torch.zeros(3, 4, 4),), {}, ValueError, "3 dims.*4 letters"),
    ((torch.zeros(3, 4, 4),), dict(dataformats="NCHW"), ValueError, "4 letters"),
    ((torch.zeros(3, 4, 4),), dict(dataformats="CHH"), ValueError, "permutation"),
    ((torch.zeros(3, 4, 4),), dict(dataformats="XYZ"), ValueError, "permutation"),
    ((torch.zeros(2, 3, 0, 4),), {}, ValueError, "empty"),
    ((torch.zeros(2, 3, 4, 4),), dict(nrow=0), ValueError, "nrow"),
    ((torch.zeros(2, 3, 4, 4),), dict(padding=-1), ValueError, "padding"),
    ((torch.zeros(2, 3, 4, 4, dtype=torch.uint8),), dict(pad_value=300), ValueError, "uint8"),
    ((torch.zeros(2, 3, 4, 4),), dict(normalize=True, value_range=0.5), TypeError, "value_range"),
    (([torch.zeros(3, 4, 4), torch.zeros(3, 4, 5)],), {}, ValueError, "must match"),
    ((torch.zeros(2, 3, 4, 4, dtype=torch.complex64),), {}, TypeError, "unsupported"),
    (("abc",), {}, TypeError, "must be a tensor"),
])
def test_errors(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        tbimage.image_grid(*args, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_backend_env(backend, monkeypatch):
    require_backend("image_grid", backend)
    monkeypatch.setenv(backends.ENV_VAR, backend)
    x = make_images((3, 3, 2, 2), torch.float32)
    np.testing.assert_array_equal(tbimage.image_grid(x).numpy(), oracle.expected_grid(x))


def test_torchvision_where_importable():
    try:
        from torchvision.utils import make_grid
    except Exception as exc:  # the CPU torch here cannot load torchvision's wheel
        pytest.skip(f"torchvision not importable: {exc}")
    for kw in (dict(), dict(nrow=3, padding=1, pad_value=0.3), dict(normalize=True), dict(normalize=True, scale_each=True),
               dict(normalize=True, value_range=(-0.1, 0.8))):
        for dtype in (torch.float32, torch.float64):
            x = make_images((7, 3, 5, 6), dtype)
            want = oracle.torch_convert(make_grid(x, **kw).permute(1, 2, 0).contiguous())
            np.testing.assert_array_equal(tbimage.image_grid(x, **kw).numpy(), want)
            np.testing.assert_array_equal(oracle.make_grid(x, **kw), make_grid(x, **kw))


# ---------------------------------------------------------------- torch parity ----------


def torch_pixels(img, dataformats):
    from torch.utils.tensorboard.summary import image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = image("t", img, dataformats=dataformats)
    v = s.value[0].image
    return decode(v.encoded_image_string), v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt,shape", [
    ("NCHW", (64, 3, 8, 8)), ("NCHW", (13, 1, 5, 7)), ("NCHW", (1, 3, 4, 4)), ("NHWC", (10, 6, 5, 3)),
    ("CHW", (3, 6, 7)), ("CHW", (1, 6, 7)), ("CHW", (4, 6, 7)), ("HWC", (6, 7, 3)), ("HW", (6, 7)), ("HW", (1, 1)),
])
def test_torch_image_summary_parity(dtype, fmt, shape):
    x = make_images(shape, dtype, seed=sum(shape))
    want, want_proto = torch_pixels(x, fmt)
    summary = image_logging.image_summary("t", image_logging.torch_image_pixels(x, fmt))
    got_proto = summary.value[0].image
    np.testing.assert_array_equal(decode(got_proto.encoded_image_string), want)
    assert (got_proto.height, got_proto.width, got_proto.colorspace) == \
        (want_proto.height, want_proto.width, want_proto.colorspace)
    assert not summary.value[0].HasField("metadata")


def test_add_images_rgba_is_an_extension():
    x = make_images((3, 4, 5, 5), torch.float32)
    with pytest.raises(AssertionError):
        torch_pixels(x, "NCHW")  # torch's make_grid asserts 3 channels
    px = image_logging.torch_image_pixels(x, "NCHW").numpy()
    assert px.shape == (5, 15, 4)
    np.testing.assert_array_equal(px, oracle.expected_grid(x, padding=0))


class CollectingWriter(image_logging.ImageLogging):
    def __init__(self):
        self.events = []

    def _write_summary(self, summary, global_step=None, walltime=None):
        self.events.append((summary, global_step, walltime))


def test_mixin_methods():
    w = CollectingWriter()
    assert w.ACCELERATED == ("add_image", "add_images")
    x = make_images((5, 1, 4, 4), torch.float32)
    w.add_image("a", x[0], 3, 12.5)
    w.add_images("b", x, global_step=4)
    w.add_image_grid("c", x, 5, nrow=2, normalize=True)
    (sa, step_a, wall_a), (sb, step_b, _), (sc, step_c, _) = w.events
    assert (step_a, wall_a, step_b, step_c) == (3, 12.5, 4, 5)
    assert sa.value[0].tag == "a" and sa.value[0].image.colorspace == 3
    np.testing.assert_array_equal(decode(sa.value[0].image.encoded_image_string), torch_pixels(x[0], "CHW")[0])
    np.testing.assert_array_equal(decode(sb.value[0].image.encoded_image_string), torch_pixels(x, "NCHW")[0])
    img = sc.value[0].image
    assert img.colorspace == 1  # add_image_grid keeps 1 channel as grayscale
    np.testing.assert_array_equal(decode(img.encoded_image_string), oracle.expected_grid(x, nrow=2, normalize=True)[..., 0])


def _read_images(logdir):
    """{(tag, step): pixels} as TensorBoard's loader serves them (legacy image values are
    migrated to [width, height, png] string tensors, spec 8)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = {}
    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*")):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:
                if v.HasField("image"):
                    out[(v.tag, event.step)] = decode(v.image.encoded_image_string)
                elif v.metadata.plugin_data.plugin_name == "images":
                    w, h, png = v.tensor.string_val
                    px = decode(png)
                    assert (int(w), int(h)) == (px.shape[1], px.shape[0])
                    out[(v.tag, event.step)] = px
    return out


EVENT_CASES = [("u8", (9, 3, 6, 5), torch.uint8, "NCHW"), ("f32", (9, 3, 6, 5), torch.float32, "NCHW"),
               ("gray", (3, 1, 6, 5), torch.float64, "NCHW"), ("hwc", (6, 5, 3), torch.float16, "HWC"),
               ("bf16", (3, 6, 5), torch.bfloat16, "CHW"), ("hw", (6, 5), torch.float32, "HW")]


def _write_cases(writer, add_image, add_images):
    for i, (tag, shape, dtype, fmt) in enumerate(EVENT_CASES):
        x = make_images(shape, dtype, seed=i)
        (add_images if len(fmt) == 4 else add_image)(tag, x, i, dataformats=fmt)
    writer.close()


def test_event_file_parity_with_torch_writer(tmp_path):
    """Pixels read back from event files: torch's writer vs tbfast's summaries written
    through the same kind of torch writer."""
    from tensorboard.compat.proto.summary_pb2 import Summary as TBSummary
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    ref = TorchWriter(str(tmp_path / "torch"))
    _write_cases(ref, ref.add_image, ref.add_images)

    class Sink(image_logging.ImageLogging):
        def __init__(self, writer):
            self.writer = writer

        def _write_summary(self, summary, global_step=None, walltime=None):
            self.writer._get_file_writer().add_summary(TBSummary.FromString(summary.SerializeToString()), global_step,
                                                       walltime)

    sink = Sink(TorchWriter(str(tmp_path / "tbfast")))
    _write_cases(sink.writer, sink.add_image, sink.add_images)
    want, got = _read_images(tmp_path / "torch"), _read_images(tmp_path / "tbfast")
    assert want.keys() == got.keys() and len(want) == len(EVENT_CASES)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_accelerate_covers_images(tmp_path):
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    try:
        from tbfast import accelerate
    except ImportError as exc:
        pytest.skip(f"tbfast.accelerate not available yet: {exc}")
    ref = TorchWriter(str(tmp_path / "torch"))
    _write_cases(ref, ref.add_image, ref.add_images)
    w = accelerate(TorchWriter(str(tmp_path / "tbfast")))
    _write_cases(w, w.add_image, w.add_images)
    want, got = _read_images(tmp_path / "torch"), _read_images(tmp_path / "tbfast")
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_tbfast_writer_roundtrip(tmp_path):
    try:
        from tbfast import SummaryWriter
    except ImportError as exc:
        pytest.skip(f"tbfast.SummaryWriter not available yet: {exc}")
    x = make_images((10, 3, 4, 4), torch.float32)
    with SummaryWriter(str(tmp_path)) as w:
        w.add_images("imgs", x, 1)
        w.add_image_grid("grid", x, 2, nrow=3, padding=1, pad_value=1.0)
    got = _read_images(tmp_path)
    np.testing.assert_array_equal(got[("imgs", 1)], torch_pixels(x, "NCHW")[0])
    np.testing.assert_array_equal(got[("grid", 2)], oracle.expected_grid(x, nrow=3, padding=1, pad_value=1.0))
