"""Train a linear probe on shuffled embeddings with PyTorch: python examples/torch_dataset.py [FOLDER] (needs torch).

`EmbeddingDataset` is the recipe: an IterableDataset whose every copy reads its own share of each epoch's shuffled
order, the share picked from the data-parallel rank (torch.distributed) and the DataLoader worker. With
remainder="drop" every share yields the same number of full batches, so no rank waits for another at the end of
an epoch. The reader pickles small, so each worker process gets its own copy.
"""

import sys
from typing import Iterator, Tuple

import numpy as np
import torch
import torch.distributed as dist
from sample_data import npy_sample

from embedding_reader import EmbeddingReader


def share() -> Tuple[int, int]:
    """(this copy's share, number of shares): one per data-parallel rank x DataLoader worker."""
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    worker = torch.utils.data.get_worker_info()
    workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
    return rank * workers + worker_id, world_size * workers


class EmbeddingDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Batches of (embeddings, global row index) of a shuffled epoch; call set_epoch(e) before each epoch."""

    def __init__(self, reader: EmbeddingReader, batch_size: int, seed: int = 0, ram_per_worker: int = 2**30):
        self.reader, self.batch_size, self.seed, self.ram_per_worker = reader, batch_size, seed, ram_per_worker
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        rank, world_size = share()
        batches = self.reader(
            self.batch_size,
            shuffle=True,
            seed=self.seed + self.epoch,  # the same on every rank and worker: disjoint shares of one order
            rank=rank,
            world_size=world_size,
            remainder="drop",
            max_ram_usage_in_bytes=self.ram_per_worker,
            show_progress=False,
        )
        for emb, meta in batches:
            yield torch.from_numpy(emb), torch.from_numpy(meta["i"].to_numpy())


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else npy_sample()
    reader = EmbeddingReader(folder)
    dataset = EmbeddingDataset(reader, batch_size=1000, seed=42)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)  # batches come made
    labels = torch.from_numpy((np.arange(reader.count) % 2).astype(np.int64))  # a toy target per global row
    probe = torch.nn.Linear(reader.dimension, 2)
    optimizer = torch.optim.SGD(probe.parameters(), lr=0.1)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        seen = []
        for emb, index in loader:
            loss = torch.nn.functional.cross_entropy(probe(emb.float()), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen.append(index)
        rows = torch.cat(seen)
        print(
            f"epoch {epoch}: {len(seen)} batches, {len(rows)} rows, {len(torch.unique(rows))} distinct, loss {loss:.3f}"
        )


if __name__ == "__main__":
    main()
