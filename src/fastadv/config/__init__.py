"""Configuration: ``params.yaml`` read, typed and validated (params), its value types (spec), and the study
of variants, experiments and scales resolved into run configs (study). Torch-free: the workflow imports it
to plan. May import: errors, methods.registry."""
