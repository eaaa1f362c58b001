"""`python -m harness ...` (and `torchrun -m harness run ...`) is the `harness` command."""

from harness.cli import main

raise SystemExit(main())
