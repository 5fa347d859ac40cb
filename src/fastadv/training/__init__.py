"""Training: the loop of one run (loop), one training step and what it is built from (step), the run's progress
(progress) and pre-emption (preemption), its device, threads, seeds and memory layout (runtime), the
learning-rate schedule (schedule), the statistics monitored during training (monitor) and model/state
files (checkpoint). May import: config, data, models, attacks, methods, atomic, errors."""
