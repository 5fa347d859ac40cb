"""How fast and how precise a machine trains and evaluates: ``bench-train`` / ``bench-eval`` (benchmark), the CPU
targets' expected wall time from a probe of the machine (estimate), the GPU's precision, speed and one-epoch
checks (gpu_check). Commands that print timings and ratios, never timed tests. May import: training, evaluation
and what they may."""
