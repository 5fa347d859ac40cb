"""Helpers of the Snakemake workflow: the CPU guard and the scheduling priority of training jobs (guard).
Torch-free. May import: config."""
