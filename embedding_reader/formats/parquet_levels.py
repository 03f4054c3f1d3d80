"""Parquet's level encodings as the page decoder needs them: RLE / bit-packed hybrid runs of repetition and
definition levels, and the shortcuts that prove a page's levels describe whole regular rows."""

from typing import Iterator, Tuple, Union

import numpy as np

from .parquet_thrift import NotFastPath, varint


def bit_width(max_level: int) -> int:
    return int(max_level).bit_length()


def is_constant(data: memoryview, bit_width: int, count: int, value: int) -> bool:
    """Whether an RLE/bit-packed hybrid stream starts with `count` copies of `value` (run by run, no array)."""
    if bit_width == 0:
        return value == 0
    return all(np.all(values == value) for _, values, _, _ in _runs(data, 0, len(data), bit_width, count))


def is_regular_rows(data: memoryview, bit_width: int, count: int, dimension: int) -> bool:
    """Whether repetition levels are [0, 1 x (dimension - 1)] repeated: whole rows of `dimension` values.

    Writers encode identical rows as identical bytes when the rows fill whole runs, so the bytes of the
    first row are compared with the rest at once; any other layout is decoded in full and compared.
    """
    rows = count // dimension
    first_row, row_end = _decode_runs(data, 0, len(data), bit_width, dimension)
    if row_end and first_row.tolist() == [0] + [1] * (dimension - 1):
        if len(data) >= row_end * rows and bytes(data[: row_end * rows]) == bytes(data[:row_end]) * rows:
            return True
    levels = hybrid(data, 0, len(data), bit_width, count)
    expected = np.ones(dimension, dtype=levels.dtype)
    expected[0] = 0
    return bool((levels.reshape(rows, dimension) == expected).all())


def hybrid(data: memoryview, position: int, end: int, bit_width: int, count: int) -> np.ndarray:
    """Decode `count` values of parquet's RLE/bit-packed hybrid encoding from data[position:end]."""
    return _decode_runs(data, position, end, bit_width, count)[0]


def _decode_runs(data: memoryview, position: int, end: int, bit_width: int, count: int) -> Tuple[np.ndarray, int]:
    """`count` values of the hybrid encoding, and the byte where the runs holding them end (0 if the last of
    those runs holds more values than that)."""
    out = np.empty(count, dtype=np.uint32)
    filled, runs_end = 0, position
    for take, values, run_end, whole in _runs(data, position, end, bit_width, count):
        out[filled : filled + take] = values
        filled += take
        runs_end = run_end if whole else 0
    return out, runs_end


def _runs(
    data: memoryview, position: int, end: int, bit_width: int, count: int
) -> Iterator[Tuple[int, Union[int, np.ndarray], int, bool]]:
    """The runs holding the first `count` values of a hybrid stream: (values taken, the repeated value or the
    values, the byte the run ends at, whether all its values were taken)."""
    if not 0 < bit_width <= 32:
        raise NotFastPath(f"bit width {bit_width}")
    filled, byte_width = 0, (bit_width + 7) // 8
    while filled < count:
        if position >= end:
            raise NotFastPath(f"hybrid stream ends after {filled} of {count} values")
        header, position = varint(data, position)
        run_end = position + ((header >> 1) * bit_width if header & 1 else byte_width)
        if run_end > end:
            raise NotFastPath("run exceeds its stream")
        length = (header >> 1) * 8 if header & 1 else header >> 1
        take = min(length, count - filled)
        if header & 1:
            yield take, _unpack(data[position:run_end], bit_width, take), run_end, take == length
        else:
            yield take, int.from_bytes(data[position:run_end], "little"), run_end, take == length
        filled, position = filled + take, run_end


def _unpack(data: memoryview, bit_width: int, count: int) -> np.ndarray:
    """The first `count` of the little-endian bit-packed values of `bit_width` bits in `data`."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little", count=count * bit_width)
    weights = np.left_shift(np.uint32(1), np.arange(bit_width, dtype=np.uint32))
    return bits.reshape(count, bit_width).astype(np.uint32) @ weights


# Thrift compact protocol, just enough to read page headers (structs of ints, bools, binaries, lists).
