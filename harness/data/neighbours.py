"""Images that look like neighbours or near-duplicates, and the groups they make.

Two kinds of pairs leak between a training and a validation split when they land on both sides:
- neighbours: the two halves of one photograph, found as the bottom row of one image matching the top row
  of another. A match is the nearest top row to a bottom row, no farther than the image's own last
  row-to-row change times `EDGE_SLACK` (rows one pixel apart in a photograph differ about that much);
  flat rows (sky, saturated, padding) are skipped, they match anything;
- near-duplicates: an average hash (the image shrunk to 8x16 block means, each bit "above the image
  mean") within `HASH_BITS` differing bits of another image's hash.
`groups_with_pairs` joins pairs (and a file's groups) into connected components: `data.groups = auto`.
"""

from __future__ import annotations

import numpy as np
import torch

EDGE_SLACK = 1.5
FLAT_STD = 3.0  # grey levels: a row flatter than this carries no evidence of where it continues
HASH_BITS = 4  # of 128: a re-encoded or slightly shifted copy stays within a few bits
_CHUNK = 1024


def edge_pairs(images: torch.Tensor | np.ndarray) -> list[tuple[int, int]]:
    """(i, j): the bottom row of image i continues into the top row of image j (i above j)."""
    x = np.asarray(images, dtype=np.float32)
    if len(x) < 2 or x.shape[1] < 2:
        return []
    bottom, top, above = x[:, -1, :], x[:, 0, :], x[:, -2, :]
    own_step = np.sqrt(((bottom - above) ** 2).mean(axis=1))
    textured = (bottom.std(axis=1) > FLAT_STD) & (top.std(axis=1) > FLAT_STD)
    width = x.shape[2]
    pairs = []
    top_sq = (top**2).sum(axis=1)
    for start in range(0, len(x), _CHUNK):
        rows = bottom[start : start + _CHUNK]
        dist = (rows**2).sum(axis=1)[:, None] + top_sq[None, :] - 2 * rows @ top.T
        dist = np.sqrt(np.maximum(dist, 0) / width)
        dist[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf  # not itself
        dist[:, ~textured] = np.inf
        best = dist.argmin(axis=1)
        for offset, j in enumerate(best):
            i = start + offset
            if textured[i] and dist[offset, j] <= EDGE_SLACK * max(own_step[i], 1.0):
                pairs.append((i, int(j)))
    return pairs


def average_hashes(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 128) bool: each image as 8x16 block means compared with the image's mean."""
    x = np.asarray(images, dtype=np.float32)
    n, h, w = x.shape
    bh, bw = max(1, h // 8), max(1, w // 16)
    blocks = x[:, : bh * 8, : bw * 16].reshape(n, 8, bh, 16, bw).mean(axis=(2, 4)).reshape(n, -1)
    return blocks > blocks.mean(axis=1, keepdims=True)


def hash_pairs(images: torch.Tensor | np.ndarray) -> list[tuple[int, int]]:
    """(i, j), i < j: the average hashes differ in at most `HASH_BITS` bits (and neither is flat)."""
    bits = average_hashes(images)
    signs = np.where(bits, 1.0, -1.0).astype(np.float32)
    informative = (bits.sum(axis=1) > 8) & ((~bits).sum(axis=1) > 8)
    pairs = []
    for start in range(0, len(signs), _CHUNK):
        agree = signs[start : start + _CHUNK] @ signs.T  # 128 - 2 * differing bits
        differing = (signs.shape[1] - agree) / 2
        for offset, j in zip(*np.nonzero(differing <= HASH_BITS), strict=True):
            i = start + int(offset)
            if i < j and informative[i] and informative[j]:
                pairs.append((i, int(j)))
    return pairs


def neighbour_pairs(images: torch.Tensor | np.ndarray) -> list[tuple[int, int]]:
    """Every neighbour and near-duplicate pair, each once, as (smaller index, larger index)."""
    found = {tuple(sorted(p)) for p in edge_pairs(images)} | set(hash_pairs(images))
    return sorted(found)


def groups_with_pairs(groups: np.ndarray | None, total: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(N,) int64 component ids: images joined by a pair or sharing a `groups` label are one group."""
    parent = np.arange(total)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links = list(pairs)
    if groups is not None:
        labels = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        first: dict[int, int] = {}
        links += [(first.setdefault(int(g), i), i) for i, g in enumerate(labels)]
    for i, j in links:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(total)], dtype=np.int64)
