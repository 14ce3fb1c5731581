"""Pretext tasks: one file each, listed in the plain dict :data:`TASKS` (no registry).

A task has two jobs (STYLE.md): ``make_example(row, reader, rng) -> dict of tensors`` on the CPU
side (in a data-loader worker), and ``build_model(cfg) -> nn.Module`` whose ``forward(batch)``
returns ``(loss, logs)`` with ``logs["logits"]`` for the accuracy. Frames arrive in the batch as
``batch["frames"]``, float ``(B, T, C, H, W)`` already augmented (one crop/flip/jitter per sample,
the same over its T frames), ``batch["target"]`` as int64 ``(B,)`` and, for the audio-visual pair
tasks (:mod:`avssl.tasks.av`), ``batch["audio"]`` as float ``(B, N)`` waveforms. The image tasks
(:mod:`avssl.tasks.image`: rotation, relative_position, colorization, exemplar, simclr, mae,
multi_task) are single-frame clips; their ``prepare`` hook fits them to the run, and tasks that
make their own targets (rotation, SimCLR, ...) return them as ``logs["target"]``; MAE, which has
no classes, returns no ``logits`` (the trainer then logs the loss alone).
"""

from __future__ import annotations

from avssl.tasks import arrow_of_time, av, image, odd_one_out, shuffle_learn, tracking
from avssl.tasks.common import Task

TASKS: dict[str, Task] = {
    "shuffle_learn": shuffle_learn.TASK,
    "odd_one_out": odd_one_out.TASK,
    "arrow_of_time": arrow_of_time.TASK,
    "ave_net": av.AVE_NET,
    "l3_net": av.L3_NET,
    "avol_net": av.AVOL_NET,
    "av_sync": av.AV_SYNC,
    **image.TASKS,
    "colorization_tracking": tracking.TASK,  # Vondrick et al. 2018; avssl-track, docs/tracking.md
}

__all__ = ["TASKS", "Task"]
