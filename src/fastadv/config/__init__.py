"""Configuration: the keys of a run's config, each declared once with its type (sections, spec), ``params.yaml``
read and validated against them (params), the typed resolved config (run_config), and the study of variants,
experiments and scales resolved into run configs (study). Torch-free: the workflow imports it to plan.
May import: errors, and the registries of methods, models and datasets (torch-free specs)."""
