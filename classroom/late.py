"""nbgrader's late-submission penalty for this course: a share of the score per started
day late, after any extension. Set in nbgrader_config.py:

    c.PerDayPenalty.percent_per_day = 10      # 0 (the default) means no penalty
"""
from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float


class PerDayPenalty(LateSubmissionPlugin):
    percent_per_day = Float(0.0, help="Points taken off per started day late, in % of the score").tag(config=True)
    max_percent = Float(100.0, help="The most that is taken off, in % of the score").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        days = math.ceil(total_seconds_late / 86400) if total_seconds_late > 0 else 0
        return score * min(self.max_percent, days * self.percent_per_day) / 100
