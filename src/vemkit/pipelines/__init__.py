"""Recipes that combine io, ml, segmentation and measure into user-level jobs."""

# Defaults the CLI shows in its help live here, in a module that imports nothing heavy,
# so that `vemkit --help` does not load PyTorch to print them.

#: Default memory budget of in-memory prediction, in GB (``--memory-budget-gb``).
DEFAULT_MEMORY_BUDGET_GB = 8.0
