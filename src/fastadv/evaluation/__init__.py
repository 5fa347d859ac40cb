"""Evaluation of trained models: PGD-50-10 and AutoAttack (protocol), the tidy results table (results) and
the training/evaluation benchmarks (benchmark). May import: training and everything it may import."""
