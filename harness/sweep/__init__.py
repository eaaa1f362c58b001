"""Sweeps: `plan` (what runs), `local` (running it here), `ray_executor` (on Ray), `progress` (views)."""
