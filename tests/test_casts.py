"""float16 -> float32 by bit arithmetic: bit-identical to numpy's cast for every float16, in any block layout."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_reader import casts
from embedding_reader.casts import cast_into

EVERY_HALF = np.arange(2**16, dtype=np.uint16).view(np.float16)  # zeros, subnormals, normals, infinities, NaNs


def numpy_cast(values: np.ndarray, dtype) -> np.ndarray:
    """What numpy's own unsafe cast gives."""
    out = np.empty(values.shape, dtype=dtype)
    np.copyto(out, values, casting="unsafe")
    return out


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    """Bit-for-bit equality (NaN payloads and the sign of zero included)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(
        np.ascontiguousarray(got).view(np.uint8), np.ascontiguousarray(expected).view(np.uint8)
    )


def finite_halves() -> np.ndarray:
    """Every finite float16 (both signs), in bit-pattern order."""
    return EVERY_HALF[np.isfinite(EVERY_HALF)]


def test_every_half_converts_exactly():
    """All 65,536 float16 bit patterns, specials included, give numpy's float32 bit for bit."""
    out = np.empty(EVERY_HALF.shape, dtype=np.float32)
    cast_into(out, EVERY_HALF)
    assert_same_bits(out, numpy_cast(EVERY_HALF, np.float32))


@pytest.mark.parametrize("block", [1, 7, 1000, 2**16])
def test_finite_halves_use_the_bit_path_exactly(monkeypatch, block):
    """Finite blocks take the arithmetic path (numpy's cast is never called) and match numpy in any block size."""
    values = finite_halves()
    expected = numpy_cast(values, np.float32)
    monkeypatch.setattr(casts, "HALF_BLOCK", block)
    real_copyto = np.copyto

    def copyto_without_half_casts(dst, src, *args, **kwargs):
        assert np.asarray(src).dtype != np.float16, "numpy's float16 cast was used"
        return real_copyto(dst, src, *args, **kwargs)

    monkeypatch.setattr(casts.np, "copyto", copyto_without_half_casts)
    out = np.empty(values.shape, dtype=np.float32)
    cast_into(out, values)
    assert_same_bits(out, expected)


@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
def test_blocks_with_infinities_or_nans_fall_back(monkeypatch, special):
    """A block holding a non-finite value is converted by numpy; the blocks around it by the bit path."""
    monkeypatch.setattr(casts, "HALF_BLOCK", 64)
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((10, 32)) * 0.05).astype(np.float16)
    values[4, 17] = special
    out = np.empty(values.shape, dtype=np.float32)
    cast_into(out, values)
    assert_same_bits(out, numpy_cast(values, np.float32))


def test_embedding_shaped_batch():
    """A 2-D batch of embedding-like values (many tiny subnormal float16) converts exactly."""
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((300, 768)) * 0.036).astype(np.float16)
    values[0, :20] = EVERY_HALF[:20]  # the smallest subnormals
    out = np.empty(values.shape, dtype=np.float32)
    cast_into(out, values)
    assert_same_bits(out, numpy_cast(values, np.float32))


@pytest.mark.parametrize(
    "stored, wanted",
    [(">f2", "<f4"), ("<f2", "<f8"), ("<f2", ">f4"), ("<f4", "<f2"), ("int8", "<f4"), ("<f8", "<f4")],
)
def test_other_casts_are_numpy_casts(stored, wanted):
    """Byte-swapped, wider, narrower and integer casts are numpy's own."""
    values = np.linspace(-3, 3, 64).reshape(8, 8).astype(stored)
    out = np.empty(values.shape, dtype=wanted)
    cast_into(out, values)
    assert_same_bits(out, numpy_cast(values, wanted))


def test_non_contiguous_arrays_are_numpy_casts():
    """Strided views go through numpy's cast and still land in place."""
    values = EVERY_HALF[:4096].reshape(64, 64)[:, ::2]
    out = np.zeros((64, 64), dtype=np.float32)
    cast_into(out[:, 1::2], values)
    assert_same_bits(out[:, 1::2], numpy_cast(values, np.float32))
    assert not out[:, ::2].any()


def test_flushing_subnormals_falls_back_to_numpy(monkeypatch):
    """When the floating point unit flushes subnormals (DAZ/FTZ set by some library), numpy's cast is used."""
    monkeypatch.setattr(casts, "_SUBNORMAL_PROBE", np.array([0.0], dtype=np.float32))  # as a flushing FPU sees it
    assert not casts._subnormals_kept()
    calls = []
    monkeypatch.setattr(casts, "_half_to_single", lambda *args: calls.append(args))
    out = np.empty(EVERY_HALF.shape, dtype=np.float32)
    cast_into(out, EVERY_HALF)
    assert not calls
    assert_same_bits(out, numpy_cast(EVERY_HALF, np.float32))


def test_this_machine_keeps_subnormals():
    """The probe itself: an ordinary process keeps subnormals, so the fast path is the one in use."""
    assert casts._subnormals_kept()
