"""Pretext tasks: one file each, listed in the plain dict :data:`TASKS` (no registry).

One protocol for every task (:class:`avssl.tasks.common.Task`, STYLE.md): ``prepare`` fits the task
to the run (rows, example makers run in the loader workers, model options, classes) and
``build_model`` makes the model whose ``forward(batch)`` returns ``(loss, logs)``. ``batch`` holds
``frames`` float ``(B, T, C, H, W)`` already augmented, ``target`` int64 ``(B,)`` and, for the
audio-visual pair tasks, ``audio`` float ``(B, N)``; ``logs["logits"]`` (absent for MAE) gives the
accuracy, against ``logs["target"]`` where the model makes its own targets.
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
