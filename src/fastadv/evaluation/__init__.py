"""Evaluation of trained models: PGD-50-10 and AutoAttack (protocol), the result file's format and reader
(result_file), the tidy results table (results). May import: training and everything it may import."""
