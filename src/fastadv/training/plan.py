"""The iterations of a run: its phases (fastadv.config.run_config.Phase; one without ``data.phases``), the
iterations per epoch of each, the learning rate after each step and the warm-up."""
from __future__ import annotations

import math

from fastadv.config.run_config import TrainConfig
from fastadv.errors import FastAdvError
from fastadv.training.schedule import epochs_done, learning_rate


class Plan:
    def __init__(self, cfg: TrainConfig, n: int, world: int = 1):
        """``n`` training images, split over ``world`` data-parallel ranks."""
        self.cfg, o = cfg, cfg.optim
        for bs in (ph.batch_size for ph in cfg.phases):
            if o.drop_last and n < bs:
                raise FastAdvError(f"optim.drop_last with {n} training images < batch_size {bs} leaves no batch")
        last = [n % ph.batch_size for ph in cfg.phases if not o.drop_last and n % ph.batch_size]
        if world > 1 and any(r < world for r in last):
            raise FastAdvError(f"the last batch of an epoch ({min(last)} images) leaves a rank of {world} without "
                               "images; set optim.drop_last true or use another subset")
        self.phase_iters = [n // ph.batch_size if o.drop_last else math.ceil(n / ph.batch_size) for ph in cfg.phases]
        self.iters_per_epoch = self.phase_iters[0]  # the first phase's (the only one without data.phases)
        self.total_iters = sum((ph.end - ph.start) * k for ph, k in zip(cfg.phases, self.phase_iters))
        # As the GradAlign code: warm-up over ⌊epochs · N / batch⌋ iterations, counted from 1 at the first step.
        self.warmup_iters = int(o.warmup_epochs * n // cfg.phases[0].batch_size)

    def iterations(self, epoch: int) -> int:
        """Iterations of training ``epoch`` (those of its phase's batch size)."""
        return self.phase_iters[self.cfg.phases.index(self.cfg.phase(epoch))]

    def epochs_at(self, step: int) -> float:
        """Epochs of training done after ``step`` iterations in all (fractional within an epoch)."""
        return epochs_done(step, self.cfg.phases, self.phase_iters)

    def lr(self, step: int) -> float:
        """The learning rate after ``step`` of all iterations (the schedule of ``optim``); with phases of other
        batch sizes, progress is counted in epochs (Wong et al.: epoch + (i+1)/len(train_loader))."""
        o = self.cfg.optim
        progress = step / self.total_iters if len(self.phase_iters) == 1 else self.epochs_at(step) / o.epochs
        return learning_rate(o.lr_schedule, progress, o.lr_max, o.lr_peak, o.epochs, o.lr_epochs, o.lr_values)

    def stamp(self) -> list[dict]:
        """The phases as ``summary.json`` records them, with their iterations per epoch."""
        return [{"start": ph.start, "end": ph.end, "images": ph.images, "crop": ph.crop, "batch_size": ph.batch_size,
                 "iterations_per_epoch": k} for ph, k in zip(self.cfg.phases, self.phase_iters)]
