"""Bad arguments are refused by name before anything is read; huge numeric arguments allocate nothing from them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedding_reader import EmbeddingReader, InvalidArgumentError, RetryPolicy

ADDRESS_SPACE_LIMIT = 3 * 2**30


def npy_reader(
    folder, dtype: str = "float32", rows: int = 10, dimension: int = 4
) -> tuple[EmbeddingReader, np.ndarray]:
    """A reader over one npy file of `rows` rows written by numpy, and the rows."""
    values = (np.arange(rows * dimension) % 100 - 50).astype(dtype).reshape(rows, dimension)
    np.save(os.path.join(folder, "emb.npy"), values)
    return EmbeddingReader(str(folder)), values


def read_all(reader: EmbeddingReader, **kwargs) -> np.ndarray:
    """Every row of the reader, concatenated."""
    return np.concatenate([batch for batch, _ in reader(show_progress=False, **kwargs)])


@pytest.mark.parametrize(
    "output_dtype", [object, "U4", bool, "datetime64[s]", np.complex64, "V8", [("a", "f4")], "no such dtype", 3.5]
)
def test_output_dtype_not_a_real_number_refused(tmp_path, output_dtype):
    """Objects, text, bools, dates, complex and structured dtypes (or no dtype at all) are refused by name
    (1.8.1: TypeError for object, the others silently accepted)."""
    reader, _ = npy_reader(tmp_path)
    with pytest.raises(InvalidArgumentError, match="output_dtype"):
        reader(batch_size=4, output_dtype=output_dtype)


@pytest.mark.parametrize(("stored", "output_dtype"), [("float16", "int8"), ("float32", "int64"), ("int16", "int8")])
def test_output_dtype_that_loses_values_refused(tmp_path, stored, output_dtype):
    """Floats into integers (1.8.1 returned zeros for float16 into int8), or ints into narrower ints, are refused."""
    reader, _ = npy_reader(tmp_path, stored)
    with pytest.raises(InvalidArgumentError, match="output_dtype"):
        reader(batch_size=4, output_dtype=output_dtype)


@pytest.mark.parametrize(
    ("stored", "output_dtype"),
    [("int8", "float32"), ("int8", "int8"), ("uint8", "int16"), ("float64", "float32"), ("float32", "float16")],
)
def test_output_dtype_allowed_casts(tmp_path, stored, output_dtype):
    """Ints into floats or wider ints, the same dtype, and float narrowing return the rows numpy's cast gives."""
    reader, values = npy_reader(tmp_path, stored)
    result = read_all(reader, batch_size=3, output_dtype=output_dtype)
    assert result.dtype == np.dtype(output_dtype)
    np.testing.assert_array_equal(result, values.astype(output_dtype))


@pytest.mark.parametrize("retry_policy", ["fast", 3, {"max_attempts": 2}])
def test_retry_policy_not_a_policy_refused(tmp_path, retry_policy):
    """A retry_policy that is not a RetryPolicy is refused by the constructor (1.8.1: AttributeError at read time)."""
    npy_reader(tmp_path)
    with pytest.raises(InvalidArgumentError, match="retry_policy"):
        EmbeddingReader(str(tmp_path), retry_policy=retry_policy)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"base_delay": -1}, "base_delay"),
        ({"base_delay": math.nan}, "base_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"max_delay": "1"}, "max_delay"),
    ],
)
def test_retry_policy_bad_values_refused(kwargs, named):
    """RetryPolicy values that no retry loop can use are refused as InvalidArgumentError naming the field."""
    with pytest.raises(InvalidArgumentError, match=named):
        RetryPolicy(**kwargs)


def test_retry_policy_good_values_accepted(tmp_path):
    """Integral attempts and finite delays of any real type (0 included) make a policy the reader takes."""
    policy = RetryPolicy(max_attempts=np.int64(3), base_delay=0, max_delay=np.float32(0.5))
    npy_reader(tmp_path)
    assert EmbeddingReader(str(tmp_path), retry_policy=policy).count == 10


@pytest.mark.parametrize("file_format", ["npy", "parquet"])
def test_huge_sizes_allocate_nothing_from_them(tmp_path, file_format):
    """batch_size, max_piece_size, parallel_pieces and the RAM budget of 10^12 to 10^18 over 10 rows return the
    10 rows, in a child process under an address-space limit (so a regression fails instead of swapping)."""
    values = np.arange(40, dtype=np.float32).reshape(10, 4)
    if file_format == "npy":
        np.save(tmp_path / "emb.npy", values)
    else:
        column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 4)
        pq.write_table(pa.table({"embedding": column}), tmp_path / "emb.parquet", row_group_size=3)
    code = f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))
        sys.path.insert(0, {os.getcwd()!r})
        import numpy as np
        from embedding_reader import EmbeddingReader
        reader = EmbeddingReader({str(tmp_path)!r}, file_format={file_format!r})
        for kwargs in [
            dict(batch_size=10**12),
            dict(batch_size=10**18),
            dict(batch_size=3, max_piece_size=10**18),
            dict(batch_size=3, parallel_pieces=10**18),
            dict(batch_size=10**18, max_piece_size=10**18, parallel_pieces=10**18, max_ram_usage_in_bytes=10**18),
        ]:
            rows = np.concatenate([batch for batch, _ in reader(show_progress=False, **kwargs)])
            assert np.array_equal(rows, np.arange(40, dtype=np.float32).reshape(10, 4)), kwargs
        print("ok")
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, check=False, text=True, timeout=50
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
