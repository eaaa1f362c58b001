"""Signed distance maps of each class, for boundary losses (Kervadec et al. 2019).

phi_c(x) is minus the distance to the class boundary inside class c and plus the distance outside it,
so sum_x p_c(x) * phi_c(x) is lowest when the predicted region is exactly the true one. Maps are
computed on the CPU with scipy's exact Euclidean distance transform, one image at a time (on 64x128
masks that is ~15x faster than one transform over a stacked 3-D array).
"""

from __future__ import annotations

import numpy as np
import torch


def signed_distance_maps(masks: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """(N,H,W) uint8 masks -> (N,K,H,W) float16 signed distances.

    The ignored class, and a class absent from (or covering all of) an image, get an all-zero map:
    there is no boundary to measure from.
    """
    from scipy import ndimage  # here: every command imports this module, and scipy.ndimage takes ~0.2 s

    array = masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    out = np.zeros((len(array), num_classes, *array.shape[1:]), dtype=np.float16)
    for c in range(num_classes):
        if c == ignore_index:
            continue
        inside = array == c
        counts = inside.reshape(len(array), -1).sum(axis=1)
        for i in np.flatnonzero((counts > 0) & (counts < inside[0].size)):
            region = inside[i]
            outside_distance = ndimage.distance_transform_edt(~region)
            inside_distance = ndimage.distance_transform_edt(region)
            out[i, c] = np.where(region, 1.0 - inside_distance, outside_distance)
    return torch.from_numpy(out)
