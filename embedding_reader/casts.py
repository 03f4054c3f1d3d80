"""Dtype conversion into batch arrays: numpy's cast, except float16 -> float32 by bit arithmetic.

numpy converts float16 one element at a time; six vectorised operations on cache-sized blocks do it faster,
bit for bit the same (benchmarks/README.md, Design measurements).
"""

import numpy as np

# float16 values per step: big enough that threads seldom wait for the GIL between steps, small enough for the cache
HALF_BLOCK = 2**18
_SCALE = np.float32(2.0**112)  # float16 exponent bias 15, float32 bias 127
_SIGN_EXPONENT_MANTISSA = np.uint32(0x8FFFE000)
_NON_FINITE_DOUBLED = 0xF800  # a float16 shifted left by one: exponent all ones (infinity or NaN) from here
_SUBNORMAL_PROBE = np.array([2.0**-126 / 2**10], dtype=np.float32)  # the float32 image of the least float16


def cast_into(out: np.ndarray, values: np.ndarray) -> None:
    """out[...] = values converted to out's dtype (as numpy's unsafe cast would)."""
    if _is_half_to_single(out, values) and _subnormals_kept():
        _half_to_single(values.reshape(-1), out.reshape(-1))
    else:
        np.copyto(out, values, casting="unsafe")


def _is_half_to_single(out: np.ndarray, values: np.ndarray) -> bool:
    """Native-order contiguous float16 values into a native-order contiguous float32 array of the same shape."""
    return (
        values.dtype == np.dtype("=f2")
        and out.dtype == np.dtype("=f4")
        and out.shape == values.shape
        and out.flags.c_contiguous
        and values.flags.c_contiguous
    )


def _subnormals_kept() -> bool:
    """False when this thread's floating point unit flushes subnormals to zero (a library set DAZ/FTZ):
    the bit arithmetic would then lose the smallest float16 values, so numpy's cast is used instead."""
    return bool((_SUBNORMAL_PROBE * _SCALE)[0] == np.float32(2.0**-24))


def _half_to_single(halves: np.ndarray, singles: np.ndarray) -> None:
    """float32 images of float16 values, block by block: a float16 sign-extended to 32 bits and shifted
    left by 13 holds its sign, exponent and mantissa where float32 keeps them once the three copies of
    the sign between them are masked off; that float32 is 2**112 times too small (normal and subnormal
    alike), which one exact multiplication fixes. Blocks holding infinities or NaNs use numpy."""
    signed, unsigned, words = halves.view(np.int16), halves.view(np.uint16), singles.view(np.uint32)
    doubled = np.empty(min(HALF_BLOCK, len(halves)), dtype=np.uint16)
    for first in range(0, len(halves), HALF_BLOCK):
        last = min(first + HALF_BLOCK, len(halves))
        block = words[first:last]
        np.copyto(block.view(np.int32), signed[first:last])
        np.left_shift(block, 13, out=block)
        np.bitwise_and(block, _SIGN_EXPONENT_MANTISSA, out=block)
        values = block.view(np.float32)
        np.multiply(values, _SCALE, out=values)
        np.left_shift(unsigned[first:last], 1, out=doubled[: last - first])  # sign dropped, exponent on top
        if doubled[: last - first].max() >= _NON_FINITE_DOUBLED:
            np.copyto(values, halves[first:last], casting="unsafe")
