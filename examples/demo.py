"""The demo `make demo` runs: read a generated sample collection and report what it holds and how fast it reads.

python examples/demo.py [FOLDER [FORMAT]]
"""

import sys
import time

from sample_data import npy_sample

from embedding_reader import EmbeddingReader


def main() -> None:
    """Open the collection, read it all once, print its shape and the throughput."""
    folder = sys.argv[1] if len(sys.argv) > 1 else npy_sample(files=8, rows=32_768, dimension=768, dtype="float16")
    file_format = sys.argv[2] if len(sys.argv) > 2 else "npy"
    opened = time.perf_counter()
    reader = EmbeddingReader(folder, file_format=file_format)
    started = time.perf_counter()
    rows = sum(len(emb) for emb, _ in reader(batch_size=100_000, show_progress=False))
    seconds = time.perf_counter() - started
    print(f"folder:     {folder}")
    print(f"count:      {reader.count} embeddings in {reader.nb_files} files")
    print(f"dimension:  {reader.dimension} ({reader.dtype}, {reader.byte_per_item} bytes each)")
    print(f"total size: {reader.total_size / 1e6:.1f} MB")
    print(f"opened in   {started - opened:.3f} s")
    speed = f"{reader.total_size / seconds / 1e9:.2f} GB/s, {rows / seconds:,.0f} rows/s"
    print(f"read {rows} rows in {seconds:.3f} s: {speed}")


if __name__ == "__main__":
    main()
