"""accelerate() is never worse than torch: every method it reroutes works for every input
type torch's own method accepts (CPU and CUDA tensors, NumPy arrays, lists) with the same
result as torch's, read back from both event files with TensorBoard's reader; input tbfast
does not take falls back to torch's own method."""

import io
import warnings

import numpy as np
import pytest
import torch

import tbfast
from conftest import values_by_tag

INPUTS = ("cpu", "numpy", "cuda")  # what torch's make_np accepts (a list raises NotImplementedError there)


def as_input(kind, t):
    if kind == "cpu":
        return t
    if kind == "numpy":
        return t.numpy()
    if kind == "list":
        return t.tolist()
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return t.cuda()


def writers(tmp_path):
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    plain = TorchWriter(str(tmp_path / "torch"))
    fast = tbfast.accelerate(TorchWriter(str(tmp_path / "fast")))
    return plain, fast


def read_both(tmp_path, plain, fast):
    plain.close()
    fast.close()
    return values_by_tag(tmp_path / "torch"), values_by_tag(tmp_path / "fast")


def decode(png):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("kind", INPUTS)
def test_add_histogram(tmp_path, kind):
    plain, fast = writers(tmp_path)
    x = torch.randn(2000, generator=torch.Generator().manual_seed(1)) * 3
    for w in (plain, fast):
        w.add_histogram("h", as_input(kind, x), 1)
        w.add_histogram("h64", as_input(kind, x), 1, bins=64)
    want, got = read_both(tmp_path, plain, fast)
    for tag in ("h", "h64"):
        a, b = want[tag][0][1].histo, got[tag][0][1].histo
        assert list(a.bucket) == list(b.bucket) and list(a.bucket_limit) == list(b.bucket_limit)
        assert (a.min, a.max, a.num) == (b.min, b.max, b.num)
        assert b.sum == pytest.approx(a.sum, rel=1e-12, abs=1e-9)
        assert b.sum_squares == pytest.approx(a.sum_squares, rel=1e-12)


@pytest.mark.parametrize("kind", ("list", "numpy", "cpu"))
def test_add_histogram_raw(tmp_path, kind):
    plain, fast = writers(tmp_path)
    limits, counts = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 4.0, 5.0])
    for w in (plain, fast):
        w.add_histogram_raw("r", 0.0, 2.0, 12, 13.0, 20.0, as_input(kind, limits), as_input(kind, counts), 2)
    want, got = read_both(tmp_path, plain, fast)
    assert want["r"][0][1].histo == got["r"][0][1].histo


@pytest.mark.parametrize("kind", INPUTS)
def test_add_pr_curve(tmp_path, kind):
    plain, fast = writers(tmp_path)
    g = torch.Generator().manual_seed(2)
    labels, preds = torch.randint(0, 2, (500,), generator=g), torch.rand(500, generator=g)
    for w in (plain, fast):
        w.add_pr_curve("pr", as_input(kind, labels), as_input(kind, preds), 3)
    want, got = read_both(tmp_path, plain, fast)
    from tensorboard.util import tensor_util

    a, b = (tensor_util.make_ndarray(v["pr"][0][1].tensor) for v in (want, got))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("method,shape,fmt", [("add_image", (3, 9, 11), "CHW"), ("add_image", (9, 11, 3), "HWC"),
                                              ("add_image", (9, 11), "HW"), ("add_images", (5, 3, 6, 7), "NCHW"),
                                              ("add_images", (5, 6, 7, 1), "NHWC")])
def test_add_image_and_images(tmp_path, kind, method, shape, fmt):
    plain, fast = writers(tmp_path)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    for w in (plain, fast):
        getattr(w, method)("img", as_input(kind, x), 4, dataformats=fmt)
    want, got = read_both(tmp_path, plain, fast)
    a, b = want["img"][0][1].image, got["img"][0][1].image
    assert (a.height, a.width, a.colorspace) == (b.height, b.width, b.colorspace)
    np.testing.assert_array_equal(decode(a.encoded_image_string), decode(b.encoded_image_string))


def test_unsupported_input_falls_back_to_torch(tmp_path):
    plain, fast = writers(tmp_path)
    x = torch.randn(100, dtype=torch.complex64).real.contiguous()  # fine for both
    c = torch.tensor([1 + 2j, 3 - 1j])  # tbfast takes no complex dtype; torch's make_np does
    for w in (plain, fast):
        w.add_histogram("real", x, 0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                w.add_histogram("complex", c, 0)
                ok = True
            except Exception as exc:  # whatever torch does, the accelerated writer does the same
                ok = type(exc)
        if w is fast:
            assert ok == ok_plain
        else:
            ok_plain = ok
    want, got = read_both(tmp_path, plain, fast)
    assert set(want) == set(got)
