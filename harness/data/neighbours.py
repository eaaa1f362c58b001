"""Images that look like neighbours or near-duplicates, and the groups they make.

Two kinds of pairs leak between a training and a validation split when they land on both sides:
- neighbours: the two halves of one photograph, found as the bottom row of one image matching the top row
  of another: the nearest top row to a bottom row, when it is clearly nearer than the second nearest
  (distance ratio under `EDGE_RATIO`, Lowe's ratio test: rover textures make every row resemble many,
  so an absolute threshold matches everything); flat rows (sky, saturated, padding) are skipped;
- near-duplicates: an average hash (the image shrunk to 8x16 block means, each bit "above the image
  mean") within `HASH_BITS` differing bits of another image's hash, confirmed by a mean absolute pixel
  difference under `DUPLICATE_MAD` grey levels (the hash alone pairs any two similar gradients).
On the shared Mars file (strips cut from 128-row frames) the edge pairs' masks continue across the cut
(99.9 % of labelled border pixels agree, against 41 % for random pairs), which is how the ratio was set.
`groups_with_pairs` joins pairs (and a file's groups) into connected components: `data.groups = auto`.
"""

from __future__ import annotations

import numpy as np
import torch

EDGE_RATIO = 0.7
FLAT_STD = 3.0  # grey levels: a row flatter than this carries no evidence of where it continues
HASH_BITS = 4  # of 128: a re-encoded or slightly shifted copy stays within a few bits
DUPLICATE_MAD = 4.0
_CHUNK = 1024


def edge_pairs(images: torch.Tensor | np.ndarray) -> list[tuple[int, int]]:
    """(i, j): the bottom row of image i continues into the top row of image j (i above j)."""
    x = np.asarray(images, dtype=np.float32)
    if len(x) < 2 or x.shape[1] < 2:
        return []
    bottom, top = x[:, -1, :], x[:, 0, :]
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
        if dist.shape[1] < 3:
            continue  # no second nearest to tell a clear match from a lucky one
        nearest = np.partition(dist, 1, axis=1)[:, :2]
        best = dist.argmin(axis=1)
        for offset, j in enumerate(best):
            i = start + offset
            first, second = nearest[offset]
            if textured[i] and np.isfinite(second) and first < EDGE_RATIO * second:
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
    """(i, j), i < j: the average hashes differ in at most `HASH_BITS` bits (and neither is flat), and the
    pixels by under `DUPLICATE_MAD` grey levels on average."""
    x = np.asarray(images)
    bits = average_hashes(x)
    signs = np.where(bits, 1.0, -1.0).astype(np.float32)
    informative = (bits.sum(axis=1) > 8) & ((~bits).sum(axis=1) > 8)
    pairs = []
    for start in range(0, len(signs), _CHUNK):
        agree = signs[start : start + _CHUNK] @ signs.T  # 128 - 2 * differing bits
        differing = (signs.shape[1] - agree) / 2
        for offset, j in zip(*np.nonzero(differing <= HASH_BITS), strict=True):
            i = start + int(offset)
            close = np.abs(x[i].astype(np.float32) - x[j].astype(np.float32)).mean() < DUPLICATE_MAD
            if i < j and informative[i] and informative[j] and close:
                pairs.append((i, int(j)))
    return pairs


def neighbour_pairs(images: torch.Tensor | np.ndarray) -> list[tuple[int, int]]:
    """Every neighbour and near-duplicate pair, each once, as (smaller index, larger index)."""
    found = {tuple(sorted(p)) for p in edge_pairs(images)} | set(hash_pairs(images))
    return sorted(found)


def neighbour_report(images: torch.Tensor | np.ndarray, shown: int = 20) -> dict:
    """What `harness data inspect` says: the edge and hash pairs (the first `shown` of each) and how many
    groups of two or more images `data.groups = auto` would make of them."""
    edges = edge_pairs(images)
    hashes = hash_pairs(images)
    groups = groups_with_pairs(None, len(images), sorted({tuple(sorted(p)) for p in edges} | set(hashes)))
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    return {
        "edge_pairs": len(edges),
        "hash_pairs": len(hashes),
        "edge_examples": [list(p) for p in edges[:shown]],
        "hash_examples": [list(p) for p in hashes[:shown]],
        "groups": int((sizes >= 2).sum()),
        "grouped_images": int(sizes[sizes >= 2].sum()),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
    }


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
