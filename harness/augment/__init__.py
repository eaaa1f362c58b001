"""Augmentation: the config vocabulary and its two backends (albumentations on the host, batched torch)."""
