"""``upsample_bilinear_exact``: F.interpolate's values bit for bit, fast for power-of-two
factors, ATen's kernel whenever the fast path is not known to agree."""
import pytest
import torch
import torch.nn.functional as F

from cascade_clip.models.utils import exact_upsample as E
from cascade_clip.models.utils import fast_path_available, upsample_bilinear_exact


def values(shape, seed=0):
    """Normal values times 10^-4..10^4, both signs, some exact zeros."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x *= 10.0**torch.randint(-4, 5, shape, generator=g)
    x[torch.rand(shape, generator=g) < 0.05] = 0
    return x.float()


def interpolate(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


CASES = [
    ((4, 4, 32, 32), (512, 512)),  # the decoders' logits of a 512 crop
    ((1, 1, 32, 32), (512, 512)),
    ((1, 3, 32, 32), (512, 512)),
    ((2, 7, 32, 43), (512, 688)),
    ((1, 2, 1, 1), (256, 256)),  # one source pixel
    ((1, 2, 40, 40), (80, 160)),  # factors 2 and 4
    ((2, 3, 1, 5), (8, 40)),  # small outputs: ATen's other kernel
    ((1, 4, 32, 32), (64, 64)),
    ((1, 2, 17, 9), (34, 72)),
    ((1, 2, 20, 30), (60, 90)),  # factor 3
    ((1, 2, 30, 20), (45, 700)),  # not an integer factor
]


@pytest.mark.parametrize('num_threads', [1, 2, 3])
@pytest.mark.parametrize('shape,size', CASES)
def test_equals_interpolate(shape, size, num_threads, threads):
    threads(num_threads)
    N, C, h, w = shape
    y = values((N, C, h, 2 * w), seed=num_threads)[..., ::2]  # every other column: strided
    assert not y.is_contiguous() or w == 1
    x = y.contiguous()
    ref = interpolate(x, size)
    assert torch.equal(upsample_bilinear_exact(x, size), ref)
    # from the strided input, into a reused buffer holding other values
    out = torch.full_like(ref, 7.0)
    assert upsample_bilinear_exact(y, size, out=out) is out
    assert torch.equal(out, ref)


def fma_emulated(a0, w0, a1, w1):
    """float32 fma(a0, w0, a1 * w1), computed in float64: the products of two float32 are
    exact in float64, so only the sum is rounded (once more to float32)."""
    p1 = (a1.double() * w1.double()).float().double()
    return (a0.double() * w0.double() + p1).float()


def test_the_two_passes_are_fused_multiply_adds_along_width_then_height():
    """Hand-computed expectation of the fast path: each axis fma(x[i0], l0, x[i1] * l1), with
    i0 = floor(src), src = (i + 0.5) / s - 0.5 clamped at 0, on an 8x4 input scaled by 4 and 2."""
    a, b, c = values((3, 1000))
    if not torch.equal(torch.addcmul(c, a, b), fma_emulated(a, b, c, torch.ones(1))):
        pytest.skip('addcmul is not a fused multiply-add on this build (the fast path is off)')
    x = values((1, 2, 8, 4))

    def axis(n_in, s):
        src = ((torch.arange(n_in * s, dtype=torch.float64) + 0.5) / s - 0.5).clamp(min=0)
        i0 = src.floor().long()
        l1 = (src - i0).float()
        return i0, (i0 + 1).clamp(max=n_in - 1), 1 - l1, l1

    i0, i1, l0, l1 = axis(4, 2)  # width: 4 -> 8
    rows = fma_emulated(x[..., i0], l0, x[..., i1], l1)
    i0, i1, l0, l1 = axis(8, 4)  # height: 8 -> 32
    expect = fma_emulated(rows[..., i0, :], l0[:, None], rows[..., i1, :], l1[:, None])
    assert torch.equal(E._fast(x, (32, 8), None), expect)


def test_falls_back_to_the_kernel_when_the_check_fails(monkeypatch):
    """A fast path that disagrees with the kernel anywhere is never used."""
    real = E._fast
    calls = []

    def off_by_one_ulp(x, size, out):
        calls.append(tuple(x.shape))
        y = real(x, size, out)
        y.view(-1)[5] = torch.nextafter(y.view(-1)[5], torch.tensor(float('inf')))
        return y

    monkeypatch.setattr(E, '_fast', off_by_one_ulp)
    monkeypatch.setattr(E, '_VERIFIED', {})
    x = values((4, 4, 32, 32))
    assert not fast_path_available(x, (512, 512))
    assert torch.equal(upsample_bilinear_exact(x, (512, 512)), interpolate(x, (512, 512)))
    assert calls == [(2, 4, 32, 32)]  # the check's probe only


def test_non_finite_inputs_go_to_the_kernel(monkeypatch):
    real = E._fast
    calls = []

    def spy(x, size, out):
        calls.append(tuple(x.shape))
        return real(x, size, out)

    monkeypatch.setattr(E, '_fast', spy)
    monkeypatch.setattr(E, '_VERIFIED', {})
    x = values((1, 3, 32, 32))
    x[0, 0, 3, 4] = float('inf')
    x[0, 1, 0, 0] = float('-inf')
    x[0, 2, 31, 31] = float('nan')
    got, ref = upsample_bilinear_exact(x, (512, 512)), interpolate(x, (512, 512))
    assert torch.equal(got.isnan(), ref.isnan()) and ref.isnan().any()
    assert torch.equal(got.nan_to_num(), ref.nan_to_num())
    assert (1, 3, 32, 32) not in calls
