"""What every storage module must do, whatever the protocol: one test class, run against local files, http (the
loopback Range server) and S3 (moto). A new protocol family gets a subclass here."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from embedding_reader import CorruptFileError, FileChangedError, NoEmbeddingsFoundError, ReadFailedError
from embedding_reader.retry import RetryPolicy
from embedding_reader.storage import Storage

pytestmark = pytest.mark.timeout(90)

SIZES = {"a.bin": 10_000, "sub/b.bin": 3_000, "sub/c.bin": 1, ".hidden.bin": 50, "d.txt": 10}
FEW = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def content(name: str) -> bytes:
    """Each file's bytes: a pure function of its name, so every range can be checked."""
    size = SIZES[name]
    return np.random.default_rng(sum(name.encode())).integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("conformance") / "data"
    for name in SIZES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content(name))
    return str(root)


class StorageConformance:
    """Subclasses give `url` (the data folder's URL) and `options`; `path(name)` is a file in the storage's form."""

    url: str
    options: dict | None = None

    @pytest.fixture
    def storage(self) -> Storage:
        storage = Storage(self.url, self.options, FEW, timeout=5)
        self.root = storage.strip(self.url).rstrip("/")
        return storage

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def test_lists_files_of_the_extension_recursively_skipping_hidden(self, storage):
        found = storage.find(self.root, ".bin")
        assert [path for path, _ in found] == sorted(self.path(name) for name in ["a.bin", "sub/b.bin", "sub/c.bin"])
        assert all(size in (None, SIZES[path[len(self.root) + 1 :]]) for path, size in found)

    def test_a_missing_folder_is_a_clear_error(self, storage):
        with pytest.raises((NoEmbeddingsFoundError, ReadFailedError)):
            storage.find(self.root + "/nothing_here", ".bin")

    @pytest.mark.parametrize(("start", "end"), [(0, 1), (0, 10_000), (123, 4567), (9_999, 10_000)])
    def test_read_range_is_exact(self, storage, start, end):
        assert storage.read_range(self.path("a.bin"), start, end) == content("a.bin")[start:end]

    def test_read_range_past_the_end_is_refused(self, storage):
        with pytest.raises((CorruptFileError, ReadFailedError)):
            storage.read_range(self.path("sub/b.bin"), 2_000, 4_000)

    def test_read_ranges_at_once_with_short_answers_allowed(self, storage):
        storage.find(self.root, ".bin")
        requests = [(self.path("a.bin"), 0, 256), (self.path("sub/b.bin"), 100, 356), (self.path("sub/c.bin"), 0, 256)]
        answers = storage.read_ranges(requests, allow_short=True)
        assert answers == [content("a.bin")[:256], content("sub/b.bin")[100:356], content("sub/c.bin")]

    @pytest.mark.parametrize(("start", "size"), [(0, 10_000), (17, 5_000), (9_000, 1_000)])
    def test_read_into_fills_the_buffer_exactly(self, storage, start, size):
        out = bytearray(size)
        storage.read_into(self.path("a.bin"), start, memoryview(out))
        assert bytes(out) == content("a.bin")[start : start + size]

    def test_read_into_past_the_end_is_refused(self, storage):
        with pytest.raises((CorruptFileError, ReadFailedError)):
            storage.read_into(self.path("sub/b.bin"), 2_000, memoryview(bytearray(2_000)))

    def test_pickled_storage_reads_alike(self, storage):
        storage.find(self.root, ".bin")
        copy = pickle.loads(pickle.dumps(storage))
        assert copy.read_range(self.path("sub/b.bin"), 5, 50) == content("sub/b.bin")[5:50]
        assert len(copy.identities) >= len(storage.identities)  # what the open learnt travels (http lists no sizes)

    def test_a_file_changed_after_listing_fails_the_read(self, storage, files):
        storage.find(self.root, ".bin")
        storage.read_into(self.path("sub/b.bin"), 0, memoryview(bytearray(10)))
        self.rewrite("sub/b.bin", files)
        try:
            with pytest.raises(FileChangedError, match=r"b\.bin"):
                storage.read_into(self.path("sub/b.bin"), 0, memoryview(bytearray(10)))
        finally:
            self.restore("sub/b.bin", files)

    def rewrite(self, name: str, files: str) -> None:
        """Replace a file by one of another size."""
        with open(os.path.join(files, name), "wb") as file:
            file.write(content(name) + b"more")

    def restore(self, name: str, files: str) -> None:
        with open(os.path.join(files, name), "wb") as file:
            file.write(content(name))


class TestLocal(StorageConformance):
    @pytest.fixture(autouse=True)
    def _url(self, files):
        self.url = files


class TestHttp(StorageConformance):
    @pytest.fixture(autouse=True)
    def _url(self, files, http_server_factory):
        server = http_server_factory(os.path.dirname(files))
        self.url = f"{server.url}/{os.path.basename(files)}/"


class TestS3(StorageConformance):
    @pytest.fixture(autouse=True)
    def _url(self, files, moto_s3):
        self.moto = moto_s3
        moto_s3.upload_folder(files, "conformance", "data")
        self.url, self.options = "s3://conformance/data", moto_s3.storage_options()

    def rewrite(self, name: str, files: str) -> None:
        super().rewrite(name, files)
        self.moto.upload_folder(files, "conformance", "data")

    def restore(self, name: str, files: str) -> None:
        super().restore(name, files)
        self.moto.upload_folder(files, "conformance", "data")
