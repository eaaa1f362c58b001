"""Signed distance maps for the boundary loss: negative inside a class, positive outside, 0 elsewhere."""

from __future__ import annotations

import math

import torch

from harness.data.distance import signed_distance_maps


def test_hand_values_for_a_square():
    mask = torch.full((1, 7, 7), 2, dtype=torch.uint8)
    mask[0, 2:5, 2:5] = 1  # a 3x3 square of class 1 on class 2
    maps = signed_distance_maps(mask, num_classes=5, ignore_index=0).float()
    phi = maps[0, 1]
    assert phi[3, 3] == -1.0  # centre: one pixel in from the edge pixels (edge pixels are 0)
    assert phi[2, 2] == 0.0 and phi[2, 3] == 0.0
    assert phi[1, 3] == 1.0 and phi[0, 3] == 2.0
    assert math.isclose(float(phi[1, 1]), math.sqrt(2), rel_tol=1e-3)
    # class 2 is the complement: its map mirrors class 1's sign on the two sides of the boundary
    assert maps[0, 2, 3, 3] > 0 and maps[0, 2, 0, 0] <= 0


def test_ignored_absent_and_full_classes_have_zero_maps():
    mask = torch.full((2, 6, 6), 3, dtype=torch.uint8)
    mask[0, :, :3] = 0
    maps = signed_distance_maps(mask, num_classes=5, ignore_index=0)
    assert maps.dtype == torch.float16 and maps.shape == (2, 5, 6, 6)
    assert not maps[:, 0].any()  # the ignored class
    assert not maps[:, 4].any()  # absent everywhere
    assert not maps[1, 3].any()  # class 3 covers all of image 1: no boundary
    assert maps[0, 3].any()
