"""Plots that say more than a number: loss curves and before/after bars."""

from __future__ import annotations

from shared.data import TASK_TITLES


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() in ("", "agg") or not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def loss_curve(log_history: list[dict], title: str = "training loss", ax=None):
    """Training loss per logged step (from a Trainer's ``state.log_history``)."""
    plt = _pyplot()
    points = [(row["step"], row["loss"]) for row in log_history if "loss" in row and "step" in row]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax.figure


def before_after(runs: dict[str, dict[str, float]], title: str = "held-out accuracy", ax=None):
    """Grouped bars: one group per task, one bar per run. ``runs``: run name -> task -> accuracy."""
    plt = _pyplot()
    names = list(runs)
    tasks = list(next(iter(runs.values())))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [t + (i - (len(names) - 1) / 2) * width for t in range(len(tasks))]
        values = [runs[name][task] for task in tasks]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    ax.set_xticks(range(len(tasks)), [TASK_TITLES.get(t, t) for t in tasks])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax.figure
