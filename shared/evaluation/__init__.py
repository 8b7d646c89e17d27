"""Evaluation: generating answers (``generation``), scoring them per task with the local ``evaluate`` metric
(``evals``, ``metrics/``)."""
