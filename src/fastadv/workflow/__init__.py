"""Helpers of the Snakemake workflow: the CPU guard and the scheduling priority of training jobs (guard), the
config's JSON schema written at parse time (schema), runs shared between experiments (runs), ``--config``
overrides typed by the schema (overrides), Snakemake called with its arguments in order (run). Torch-free.
May import: config, methods.registry."""
