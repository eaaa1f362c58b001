"""Comparisons, the report and its figures, and the speed benchmark: what is read from finished runs."""
