"""Deterministic synthetic embeddings and metadata, shared by the generator and the runner.

Every value is a pure function of (global row index, column), so any row can be recomputed anywhere
to check a reader's output exactly: a shifted, duplicated or misplaced row never matches (each row
carries its own index, and the rest of the row is high-entropy, so a byte-misaligned read fails too).
Values are exactly representable in the stored dtype (float32: 24-bit integers / 2**23, float16:
11-bit integers / 2**10), so a float16 row widened to float32 compares bit-exactly too.
Rows are gathered from a fixed table (prime length) so that making or checking a row costs a copy.

Only numpy is used here: the runner imports this module under the reference's virtualenv as well.
"""

from __future__ import annotations

import functools

import numpy as np

SEED = np.uint64(0x5EED_BE7C_4A11_0001)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_WORDS = ("cat", "dog", "tree", "house", "car", "boat", "river", "mountain", "city", "bird", "flower", "road", "sky")
TABLE_ROWS = 4093
INDEX_COLUMNS = 3


def _mix(x: np.ndarray) -> np.ndarray:
    """Apply the splitmix64 finalizer to a uint64 array in place and return it."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


@functools.lru_cache(maxsize=4)
def _table(dim: int, dtype: np.dtype) -> np.ndarray:
    """Return the (TABLE_ROWS, dim) high-entropy value table that rows are drawn from."""
    x = np.arange(TABLE_ROWS * dim, dtype=np.uint64).reshape(TABLE_ROWS, dim) + SEED
    _mix(x)
    if dtype == np.float16:
        k = (x >> np.uint64(53)).astype(np.int32) - 1024
        return (k.astype(np.float32) / np.float32(1024.0)).astype(np.float16)
    k = (x >> np.uint64(40)).astype(np.int32) - (1 << 23)
    return k.astype(np.float32) / np.float32(1 << 23)


def embedding_rows(rows: np.ndarray, dim: int, dtype: str | np.dtype) -> np.ndarray:
    """Return the (len(rows), dim) embeddings of the given global row indices, in the stored dtype.

    Row r is table row r % TABLE_ROWS, with its first INDEX_COLUMNS columns replaced by the base-1024
    digits of r (divided by 1024): exact in float16 and float32, unique for r < 2**30.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float16, np.float32):
        raise ValueError(f"unsupported dtype {dtype}")
    if dim < INDEX_COLUMNS:
        raise ValueError(f"dim must be >= {INDEX_COLUMNS}")
    rows = np.asarray(rows, dtype=np.int64)
    out = np.take(_table(dim, dtype), rows % TABLE_ROWS, axis=0)
    for k in range(INDEX_COLUMNS):
        out[:, k] = ((rows >> (10 * k)) & 1023).astype(np.float32) / np.float32(1024.0)
    return out


def embedding_range(start: int, end: int, dim: int, dtype: str | np.dtype) -> np.ndarray:
    """Return the embeddings of global rows [start, end)."""
    return embedding_rows(np.arange(start, end, dtype=np.int64), dim, dtype)


def caption(i: int) -> str:
    """Return the caption string of global row i (variable length)."""
    words = " ".join(_WORDS[(i // 13**k) % 13] for k in range(1 + i % 5))
    return f"a photo number {i} of a {words}"


def url(i: int) -> str:
    """Return the url string of global row i."""
    return f"https://img.example.org/{i % 997:03d}/{i:010d}.jpg"


def count_bad_rows(emb: np.ndarray, rows: np.ndarray, dtype: str | np.dtype) -> int:
    """Return how many rows of emb differ from the expected rows `rows`, compared exactly in emb's dtype.

    dtype is the stored dtype the expected values are drawn from (float16 data read as float32 is
    widened exactly). Works in chunks so that checking a large batch allocates little memory.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if emb.ndim != 2 or emb.shape[0] != len(rows):
        return len(rows)
    bad = 0
    for lo in range(0, len(rows), 4096):
        expected = embedding_rows(rows[lo : lo + 4096], emb.shape[1], dtype).astype(emb.dtype, copy=False)
        bad += int(np.count_nonzero((emb[lo : lo + 4096] != expected).any(axis=1)))
    return bad
