"""Constants shared by tests (conftest.py holds the fixtures)."""

# A model and dataset small enough for a 1-epoch run in a few seconds.
TINY_ARGS = [
    "--arch-param", "width=4",
    "--arch-param", "depth=2",
    "--data-param", "n=24",
    "--data-param", "test_n=3",
    "--set", "train.batch_size=8",
    "--set", "train.eval_batch_size=16",
    "--epochs", "1",
    "--no-progress",
]  # fmt: skip

TINY_CONFIG = {
    "arch": {"name": "unet", "params": {"width": 4, "depth": 2}},
    "data": {"params": {"n": 24, "test_n": 3}},
    "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16},
}
