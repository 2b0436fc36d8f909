"""Image sources beyond plain files and arrays (see :mod:`lemon.data.base`): members of tar shards and
image bytes held in memory. Both are picklable (DataLoader workers) and expose stable content ``ids``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from lemon.data.base import content_id, digest, file_digests, file_stamps


@dataclass
class TarImages:
    """Images stored inside uncompressed tar shards (webdataset), read by byte offset without extraction.

    ``shards[k]`` is a shard path relative to ``root``; image i lives in shard ``shard_index[i]`` at byte
    ``offsets[i]`` with ``sizes[i]`` bytes. ``ids`` are ``"<shard>/<member name>"``.
    """

    root: Path
    shards: Sequence[str]
    shard_index: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    members: Sequence[str]

    @cached_property
    def ids(self) -> list[str]:
        return [f"{self.shards[s]}/{m}" for s, m in zip(self.shard_index, self.members)]

    def __len__(self) -> int:
        return len(self.members)

    def read_bytes(self, i: int) -> bytes:
        with open(os.path.join(self.root, self.shards[int(self.shard_index[i])]), "rb") as f:
            f.seek(int(self.offsets[i]))
            return f.read(int(self.sizes[i]))

    def __getitem__(self, i: int):
        from lemon.data.images import open_rgb

        return open_rgb(self.read_bytes(i))

    def fingerprint(self, content: bool = False) -> str:
        shards = [os.path.join(self.root, shard) for shard in self.shards]
        return digest(
            file_digests(shards) if content else file_stamps(shards),
            np.asarray(self.shard_index, dtype=np.int64).tobytes(),
            np.asarray(self.offsets, dtype=np.int64).tobytes(),
            np.asarray(self.sizes, dtype=np.int64).tobytes(),
        )

    def identities(self) -> np.ndarray:
        """(n,) uint64 content id of each member's bytes."""
        return np.fromiter(
            (content_id(self.read_bytes(i)) for i in range(len(self))),
            dtype=np.uint64,
            count=len(self),
        )

    def subset(self, index: np.ndarray) -> TarImages:
        index = np.asarray(index)
        return TarImages(
            self.root,
            self.shards,
            self.shard_index[index],
            self.offsets[index],
            self.sizes[index],
            [self.members[i] for i in index],
        )


@dataclass
class BytesImages:
    """Encoded images held in memory (e.g. a parquet image column); ``ids`` given by the loader."""

    blobs: Sequence[bytes]
    ids: Sequence[str]

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int):
        from lemon.data.images import open_rgb

        return open_rgb(self.blobs[i])

    def fingerprint(self, content: bool = False) -> str:
        return digest(*self.blobs)

    def identities(self) -> np.ndarray:
        """(n,) uint64 content id of each blob (equal to that of a file holding the same bytes)."""
        return np.fromiter(
            (content_id(b) for b in self.blobs), dtype=np.uint64, count=len(self.blobs)
        )

    def subset(self, index: np.ndarray) -> BytesImages:
        index = np.asarray(index)
        return BytesImages([self.blobs[i] for i in index], [self.ids[i] for i in index])
