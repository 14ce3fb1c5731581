"""Pretext tasks: one file each, listed in the plain dict :data:`TASKS` (no registry), one
protocol (:class:`avssl.tasks.common.Task`): ``forward(batch)`` returns ``(loss, logs)``.
Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/__init__.py".
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
