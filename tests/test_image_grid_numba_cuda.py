"""The Numba CUDA image-grid kernels (tbfast/numba_kernels/image_grid_numba_cuda.py)
against the CPU native kernel (itself tested against torch and torchvision) and the
torch reference backend: the canvases must be byte-equal.

They run under the Numba CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1
before numba is imported), or on a GPU with TBFAST_TEST_NUMBA_CUDA=device. Plans are
built by tbfast.image.plan_grid (the real validation and layout). Every uint8 buffer and
float64 scratch the kernels allocate is pre-filled with garbage, so a byte or range the
kernels leave unwritten shows up.
"""

import importlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("numba.cuda")

K = importlib.import_module("tbfast.numba_kernels.image_grid_numba_cuda")
I = importlib.import_module("tbfast.image")  # noqa: E741

if not K.SIMULATOR:
    from numba import cuda as _cuda

    if not (torch.cuda.is_available() and _cuda.is_available()):
        pytest.skip("neither the Numba CUDA simulator nor a CUDA GPU", allow_module_level=True)
DEVICE = "cpu" if K.SIMULATOR else "cuda"

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # simulator: inf - inf

DTYPES = [torch.uint8, torch.bool, torch.int16, torch.float16, torch.bfloat16, torch.float32, torch.float64]
NORMS = {
    "plain": dict(),
    "value_range": dict(normalize=True, value_range=(-0.3, 1.3)),
    "scale_each": dict(normalize=True, scale_each=True),
    "data_range": dict(normalize=True),
}


@pytest.fixture(autouse=True)
def garbage_allocations(monkeypatch):
    """torch.empty in the kernels' host code hands out garbage-filled memory."""
    empty = torch.empty

    def dirty(*args, **kw):
        t = empty(*args, **kw)
        if t.dtype == torch.uint8:
            t.fill_(0xA5)
        elif t.dtype.is_floating_point:
            t.fill_(math.nan)
        return t

    monkeypatch.setattr(torch, "empty", dirty)


def make_images(shape, dtype, seed, lo=-0.3, hi=1.3):
    """Random images. Floats: a share of values on the float32 level boundaries
    lo + k/255 * (hi - lo) and their neighbours, where float32 and float64 arithmetic
    give different bytes, and lo and hi themselves (the value_range and the data range)."""
    rng = np.random.default_rng(seed)
    if dtype == torch.uint8:
        return torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
    if dtype == torch.bool:
        return torch.from_numpy(rng.integers(0, 2, shape).astype(bool))
    if not dtype.is_floating_point:
        return torch.from_numpy(rng.integers(-300, 300, shape)).to(dtype)
    x = rng.uniform(lo, hi, shape)
    flat = x.reshape(-1)
    m = rng.random(flat.size) < 0.4
    edges = (rng.integers(0, 256, m.sum()) / 255.0 * (hi - lo) + lo).astype(np.float32)
    flat[m] = np.nextafter(edges, rng.choice([-np.inf, 0.0, np.inf], edges.size).astype(np.float32))
    flat[:4] = [lo, hi, 0.0, 1.0]
    return torch.from_numpy(x).to(dtype)


def grids(images, gray_to_rgb=False, reference=True, **kw):
    """(kernel canvas, native canvas[, reference canvas]) as NumPy; asserts shape/dtype."""
    cpu_images = [im.cpu() for im in images] if isinstance(images, list) else images.cpu()
    dev_images = [im.to(DEVICE) for im in images] if isinstance(images, list) else images.to(DEVICE)
    plan = I.plan_grid(dev_images, gray_to_rgb=gray_to_rgb, **kw)
    out = K.run(plan)
    assert out is plan.out and out.dtype == torch.uint8 and tuple(out.shape) == plan.out_shape
    assert out.device == plan.images[0].device
    res = [out.cpu().numpy()]
    for fn in ([I._grid_native, I._grid_reference] if reference else [I._grid_native]):
        p = I.plan_grid(cpu_images, gray_to_rgb=gray_to_rgb, **kw)
        fn(p)
        res.append(p.out.numpy())
    return res


def check(images, **kw):
    res = grids(images, **kw)
    for name, want in zip(("native", "reference"), res[1:]):
        np.testing.assert_array_equal(res[0], want, err_msg=f"canvas vs {name}")
    return res[0]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_and_normalisation(dtype):
    """Every normalisation: one (in turn) on 4 images of 3 x 17 x 19 with nrow 3 (two
    empty cells in the second row), the others on 3 smaller images (the simulator is slow)."""
    i = DTYPES.index(dtype)
    big = make_images((4, 3, 17, 19), dtype, seed=i)
    small = make_images((3, 3, 7, 9), dtype, seed=i + 50)
    for j, (name, kw) in enumerate(NORMS.items()):
        pad = dict(pad_value=0.5) if dtype.is_floating_point or kw else dict(pad_value=1)
        if j == i % len(NORMS):
            out = check(big, nrow=3, padding=2, **pad, **kw)
            assert out.shape == (2 * 19 + 2, 3 * 21 + 2, 3), name
        else:
            check(small, nrow=2, padding=1, **pad, **kw)


def test_gray_to_rgb_gray_and_rgba():
    x = make_images((3, 1, 9, 7), torch.float32, seed=10)
    rgb = check(x, gray_to_rgb=True, nrow=2, padding=1, normalize=True)
    assert rgb.shape[2] == 3 and (rgb[..., 0] == rgb[..., 2]).all()
    gray = check(x, nrow=2, padding=1, normalize=True)
    assert gray.shape[2] == 1
    np.testing.assert_array_equal(gray[..., 0], rgb[..., 1])
    check(make_images((2, 4, 5, 6), torch.bfloat16, seed=11), nrow=1, padding=3, normalize=True, scale_each=True)
    check(make_images((3, 1, 5, 4), torch.uint8, seed=12), gray_to_rgb=True, pad_value=200)


def test_padding_and_layouts():
    x = make_images((4, 3, 6, 5), torch.float16, seed=13)
    for kw in (dict(padding=0), dict(padding=4, nrow=4), dict(nrow=1), dict(nrow=2, pad_value=0.25)):
        check(x, **kw)
    check(x[:1], padding=5)  # one image: no padding
    check(x[1], dataformats="CHW")
    # strided views, read in place: channels-last memory, a stepped slice, a list of views
    nhwc = make_images((3, 8, 10, 3), torch.float64, seed=14)
    check(nhwc, dataformats="NHWC", nrow=2, normalize=True)
    big = make_images((2, 3, 12, 22), torch.float32, seed=15)
    check(big[:, :, ::2, 1::3], normalize=True, scale_each=True)
    check([big[0].flip(1)[:, :11, 3:14], big[1].transpose(1, 2)[:, :11, :11]], normalize=True)


def test_nan_and_images_without_finite_values():
    x = make_images((4, 3, 7, 9), torch.float32, seed=16)
    x[0, 0, 0, :3] = torch.tensor([math.nan, math.inf, -math.inf])
    x[2] = math.nan  # no finite value: [0, 1] with scale_each; left out of the data range
    x[3, 1] = math.inf
    for kw in NORMS.values():
        out = check(x, nrow=2, **kw)
    assert out[2 + 7 + 2:2 + 7 + 2 + 7, 2:2 + 9].max() == 0  # the NaN image: 0 everywhere
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        none = torch.full((2, 1, 4, 5), math.nan, dtype=dtype)
        none[1, 0, 0, :2] = torch.tensor([-math.inf, math.inf])  # [0, 1]: black and white
        check(none, normalize=True)  # nothing finite anywhere: [0, 1]
        check(none, normalize=True, scale_each=True)


def test_bool_bytes_other_than_one_are_true():
    b = torch.from_numpy(np.random.default_rng(22).integers(0, 8, (2, 3, 4, 6), dtype=np.uint8)).view(torch.bool)
    check(b, normalize=True)  # data range [0, 1], not [0, 7]
    check(b, padding=1)


def test_value_range_edge_cases():
    x = make_images((3, 3, 5, 6), torch.float32, seed=17)
    check(x, normalize=True, value_range=(0.5, 0.5))  # divisor 1e-5
    check(x, normalize=True, value_range=(1.0, 0.0))  # reversed: as torchvision's clamp/sub/div
    check(x.double() * 1e-7, normalize=True)  # range below 1e-5
    c = torch.full((2, 3, 4, 4), 0.25)
    check(c, normalize=True)  # constant: hi - lo = 0
    check(make_images((2, 3, 4, 5), torch.uint8, seed=18), normalize=True)  # uint8 normalised from 0..255
    check(make_images((2, 3, 4, 5), torch.int16, seed=19), normalize=True, scale_each=True)
    # wide integers: the range in float32 too (a pixel, lo, hi per image where a float64
    # range would give another byte), then through float64 to float32 for int64
    cases = [(-756255878, 768369880, 224287757), (-191095352, 1723597155, 574781619),
             (-877364444, 1991271855, 1901275422), (-934197428, 926498529, 153032832)]
    rng = np.random.default_rng(23)
    wide = np.stack([rng.integers(lo, hi, (1, 4, 5)) for lo, hi, _ in cases])
    wide[:, 0, 0, :3] = cases
    check(torch.from_numpy(wide).to(torch.int32), normalize=True, scale_each=True)
    wide[1] = wide[1] * 2**20 + 1  # int64 values up to 2^51 (below 2^53: torch and C++ agree)
    check(torch.from_numpy(wide), normalize=True, scale_each=True)
    check(torch.from_numpy(wide), normalize=True)


def test_grid_stride_and_many_blocks_per_image(monkeypatch):
    x = make_images((3, 3, 24, 20), torch.float32, seed=20)
    x[1, 2, 23, 19] = 7.0  # the maximum in the last pixel of an image
    x[2, 0, 0, 0] = -5.0
    check(x, normalize=True, scale_each=True)  # 1440 pixels: 3 range blocks per image
    monkeypatch.setattr(K, "MAX_BLOCKS", 2)  # canvas: 2 blocks stride over every chunk; 1 range block per image
    check(x, normalize=True, nrow=2)


@pytest.mark.skipif(K.SIMULATOR, reason="CUDA only: no host synchronisation")
def test_no_host_sync_on_device():
    x = make_images((3, 3, 8, 8), torch.float32, seed=21).cuda()
    plan = I.plan_grid(x, normalize=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        K.run(plan)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    ref = I.plan_grid(x.cpu(), normalize=True)
    I._grid_native(ref)
    np.testing.assert_array_equal(plan.out.cpu().numpy(), ref.out.numpy())


@pytest.mark.skipif(not K.SIMULATOR, reason="checks the simulator build's import")
def test_import_needs_no_gpu():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    code = "import tbfast.numba_kernels.image_grid_numba_cuda as K; assert not K.SIMULATOR and not K._KERNELS"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
