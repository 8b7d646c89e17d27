"""Plots that say more than a number: loss curves, before/after bars, memory and the LoRA sweep, NF4 levels,
what DPO and a reward model learn, best-of-n against the judge, and what GRPO does over its steps and to pass@k.

Every figure is built on ``pyplot()``, which picks a backend that works in a notebook and headless alike."""

from __future__ import annotations

import textwrap

from shared.training.memory import megabytes
from shared.world.tasks import TASK_TITLES


def pyplot():
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
    """Training loss per logged step (from a Trainer's ``state.log_history``), and the validation loss when the
    trainer was given an ``eval_dataset``."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for key, label in (("loss", "training"), ("eval_loss", "validation")):
        points = [(row["step"], row[key]) for row in log_history if key in row and "step" in row]
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker=".", label=label)
    if any("eval_loss" in row for row in log_history):
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax.figure


def _legend_below(ax, columns: int) -> None:
    """The legend under the axes (and under the x label, if any), where it cannot cover a bar or its value label."""
    two_line_ticks = any("\n" in tick.get_text() for tick in ax.get_xticklabels())
    below = -0.28 if ax.get_xlabel() or two_line_ticks else -0.15
    longest = max((len(label) for label in ax.get_legend_handles_labels()[1]), default=1)
    fits = max(1, 64 // (longest + 6))  # as many columns as the figure's width holds
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, below), ncol=max(1, min(columns, fits)),
              frameon=False)
    ax.figure.tight_layout()


def dpo_curves(log_history: list[dict], title: str = "what DPO does to the two answers"):
    """Left: the mean log-probability of the chosen and the rejected answers over training (what the policy
    says of each); right: the reward margin, beta times the difference of their log-ratios (what the loss
    pushes up). The margin can rise while both log-probabilities fall."""
    plt = pyplot()
    rows = [row for row in log_history if "rewards/margins" in row]
    steps = [row["step"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(steps, [row["logps/chosen"] for row in rows], label="chosen", color="tab:green")
    left.plot(steps, [row["logps/rejected"] for row in rows], label="rejected", color="tab:red")
    left.set(xlabel="step", ylabel="log-probability (nats, summed)", title="log pi(answer | prompt)")
    left.legend()
    right.plot(steps, [row["rewards/margins"] for row in rows], color="tab:blue")
    right.axhline(0, color="grey", linewidth=0.8)
    right.set(xlabel="step", ylabel="margin", title="beta (log-ratio chosen - log-ratio rejected)")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def beta_sweep(points: list[dict], title: str = "beta: how far the policy moves, and what it buys"):
    """One point per run: x the KL from its reference (nats per answer), y the judge's two scores -- abstaining
    when the world is silent, the right fact when it records one -- each point labelled with its beta."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(5.6, 3.6))
    for key, label, marker in (("abstains_when_unrecorded", "abstains when unrecorded", "o"),
                               ("right_when_recorded", "right when recorded", "s")):
        ordered = sorted(points, key=lambda point: point["kl"])
        ax.plot([p["kl"] for p in ordered], [p[key] for p in ordered], marker=marker, label=label)
        if key == "abstains_when_unrecorded":  # one label per run, on the upper line
            span = (ordered[-1]["kl"] - ordered[0]["kl"]) or 1.0
            height, previous = 6, None
            for point in ordered:
                # runs a few hundredths of a nat apart would print their labels on top of each other: stack them
                close = previous is not None and point["kl"] - previous < 0.08 * span
                height = height + 9 if close else 6
                ax.annotate(f"beta {point['beta']:g}", (point["kl"], point[key]), textcoords="offset points",
                            xytext=(0, height), fontsize=7, ha="center")
                previous = point["kl"]
    ax.margins(x=0.15)
    ax.set(xlabel="KL(policy || reference), nats per answer", ylabel="held-out, judged", title=title)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def reward_curves(log_history: list[dict], title: str = "training the reward model"):
    """Left: the Bradley-Terry loss over training; right: how often the chosen answer of a training batch scored
    above the rejected one (TRL logs both as ``loss`` and ``accuracy``)."""
    plt = pyplot()
    rows = [row for row in log_history if "accuracy" in row and "loss" in row]
    steps = [row["step"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(steps, [row["loss"] for row in rows], marker=".")
    left.axhline(0.6931, color="grey", linewidth=0.8, linestyle="--", label="log 2: a coin toss")
    left.set(xlabel="step", ylabel="loss", title="Bradley-Terry loss (+ the centring term)")
    left.legend(fontsize=8)
    right.plot(steps, [row["accuracy"] for row in rows], marker=".", color="tab:green")
    right.set(xlabel="step", ylabel="pairs ranked right", title="training batches", ylim=(0, 1.05))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def best_of_n(curve: dict, title: str = "best-of-n: the reward model's pick, scored by the reward model and the judge"):
    """Left: the mean reward-model score of the answer best-of-n keeps; right: how often the judge finds it
    right (recorded facts and unrecorded questions), beside the best of n by the judge itself (an oracle: what
    the policy's samples hold). x: n, with KL(best-of-n || policy) = log n - (n - 1)/n in the tick labels."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    ticks = [f"{n}\n{kl:.1f}" for n, kl in zip(curve["n"], curve["kl"])]
    left.plot(curve["n"], curve["proxy"], marker="o", color="tab:purple")
    left.set(ylabel="reward model's score", title="what the reward model sees")
    colours = {"recorded": "tab:blue", "unrecorded": "tab:orange"}
    labels = {"recorded": "right fact (recorded)", "unrecorded": "abstains (unrecorded)"}
    for group, values in curve["judge"].items():
        right.plot(curve["n"], values, marker="o", color=colours[group], label=labels[group])
        right.plot(curve["n"], curve["oracle"][group], linestyle=":", marker="x", color=colours[group],
                   label=f"{labels[group]}, best by the judge")
    right.set(ylabel="held-out, judged", title="what the judge sees", ylim=(-0.03, 1.05))
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(curve["n"], ticks)
        ax.set_xlabel("n (and KL from the policy, nats)")
        ax.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    # One legend for the figure, under both panels: the tick labels have two lines, and a legend under the right
    # panel alone would cover its x label.
    figure.legend(*right.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    return figure


def policy_against_reward_model(points: list[dict], title: str = "a policy trained against the reward model"):
    """Left: the reward model's mean score of the policy's greedy answers, step by step; right: how often the judge
    finds them right (recorded facts; unrecorded questions, where the right answer is to abstain). `points`:
    ``step_tracker`` points holding "proxy", "recorded" and "unrecorded" (``rewards.proxy_and_judge``)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    steps = [p["step"] for p in points]
    left.plot(steps, [p["proxy"] for p in points], marker="o", color="tab:purple")
    left.set(ylabel="reward model's score", title="what the reward model sees")
    right.plot(steps, [p["recorded"] for p in points], marker="o", color="tab:blue", label="right fact (recorded)")
    right.plot(steps, [p["unrecorded"] for p in points], marker="o", color="tab:orange",
               label="abstains (unrecorded)")
    right.set(ylabel="held-out, judged", title="what the judge sees", ylim=(-0.03, 1.05))
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def reward_accuracy(accuracies: dict[str, dict[str, float]], title: str = "held-out pairs ranked right, by kind"):
    """Grouped bars: for each scorer (a reward model, DPO's implicit reward...) the share of held-out pairs whose
    chosen answer it scores above the rejected one, per kind of pair and over all."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(8, 3.4))
    kinds = [k for k in next(iter(accuracies.values())) if k != "all"] + ["all"]
    width = 0.8 / len(accuracies)
    for i, (name, values) in enumerate(accuracies.items()):
        xs = [j + (i - (len(accuracies) - 1) / 2) * width for j in range(len(kinds))]
        bars = ax.bar(xs, [values[k] for k in kinds], width, label=name)
        ax.bar_label(bars, labels=[f"{values[k]:.0%}" for k in kinds], fontsize=7)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(kinds)), [k.replace("_", " ") for k in kinds])
    ax.set(ylabel="chosen scored higher", ylim=(0, 1.12), title=title)
    _legend_below(ax, len(accuracies))
    return figure


def before_after(runs: dict[str, dict[str, float]], title: str = "held-out accuracy", ax=None):
    """Grouped bars: one group per task, one bar per run. ``runs``: run name -> task -> accuracy."""
    plt = pyplot()
    names = list(runs)
    tasks = list(next(iter(runs.values())))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks)), 3.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [t + (i - (len(names) - 1) / 2) * width for t in range(len(tasks))]
        values = [runs[name][task] for task in tasks]
        bars = ax.bar(xs, values, width, label=name)
        crowded = len(names) > 3   # side by side, the labels of narrow bars would run into each other
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=6 if crowded else 8,
                     rotation=90 if crowded else 0, padding=2)
    # Beyond three groups, long names on two lines: side by side they would run into each other.
    names_width = 14 if len(tasks) > 3 else 40
    ax.set_xticks(range(len(tasks)), [textwrap.fill(TASK_TITLES.get(t, t), names_width) for t in tasks])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    _legend_below(ax, len(names))
    return ax.figure


def footprint(breakdowns: dict[str, dict[str, int]], title: str = "what the weights cost in memory"):
    """Stacked bars, one per way of storing the model: bytes by kind (MB on the axis)."""
    plt = pyplot()
    _, ax = plt.subplots(figsize=(6, 3))
    names = list(breakdowns)
    kinds = list(dict.fromkeys(kind for sizes in breakdowns.values() for kind in sizes))
    # Kinds every bar has go first, so each starts at 0 on the axis and lines up from bar to bar.
    kinds.sort(key=lambda kind: not all(kind in sizes for sizes in breakdowns.values()))
    bottoms = [0.0] * len(names)
    for kind in kinds:
        values = [breakdowns[name].get(kind, 0) / 1e6 for name in names]
        ax.barh(names, values, left=bottoms, label=kind)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for row, total in enumerate(bottoms):
        ax.text(total, row, f" {total:,.1f} MB", va="center", fontsize=8)
    ax.set_xlabel("MB")
    ax.set_xlim(0, max(bottoms) * 1.25)
    ax.set_title(title)
    _legend_below(ax, len(kinds))
    return ax.figure


def nf4_levels(scaled, grids: dict, title: str = "weights / block absmax, and the levels they round to"):
    """A histogram of block-scaled weights with each grid's levels marked below it."""
    plt = pyplot()
    _, ax = plt.subplots(figsize=(7, 3))
    ax.hist(scaled.numpy(), bins=120, range=(-1, 1), color="lightgray")
    top = ax.get_ylim()[1]
    for row, (name, levels) in enumerate(grids.items()):
        y = -top * (0.08 + 0.08 * row)
        ax.scatter(levels.numpy(), [y] * len(levels), marker="|", s=200, label=f"{name} ({len(levels)} levels)")
    ax.set_ylim(-top * (0.12 + 0.08 * len(grids)), top)
    ax.set_xlabel("value / absmax of its block of 64")
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    return ax.figure


def training_memory(memory: dict[str, dict[str, int]], title: str = "what training keeps in memory"):
    """Stacked bars, one per run: the parts of ``training_state_bytes`` (run name -> parts), in MB."""
    plt = pyplot()
    parts = [("frozen_weights", "frozen weights"), ("trainable_weights", "trainable weights"),
             ("gradients", "gradients"), ("optimizer_moments", "AdamW moments")]
    figure, ax = plt.subplots(figsize=(6, 3.2))
    names = list(memory)
    bottoms = [0.0] * len(names)
    for key, label in parts:
        values = [megabytes(memory[name][key]) for name in names]
        ax.bar(names, values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for x, total in enumerate(bottoms):
        ax.annotate(f"{total:.1f} MB", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("MB (activations excluded)")
    ax.set_ylim(0, max(bottoms) * 1.15)
    ax.set_title(title)
    _legend_below(ax, len(parts))
    return figure


def lora_sweep(results: list[dict], points: dict[str, dict] | None = None):
    """Mean held-out accuracy against trainable parameters (left) and training-state memory (right).

    `results`: from ``run_sweep``, one marker shape per series (e.g. "LoRA on attention"), each run labelled by
    rank and alpha on the left. `points`: more runs to show, name -> {"trainable_parameters", "memory_bytes",
    "mean_accuracy"} (e.g. the full LoRA run and rung 02's full fine-tune).
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    def series_of(run):  # run_sweep names it; results from elsewhere fall back to their target set
        return run.get("series", f"LoRA on {run['targets']}")

    series = list(dict.fromkeys(series_of(r) for r in results))
    for ax, key, label in ((axes[0], "trainable_parameters", "trainable parameters"),
                           (axes[1], "memory_bytes", "training-state memory (MB, activations excluded)")):
        scale = megabytes if key == "memory_bytes" else (lambda n: n)
        for name, marker in zip(series, "os^vD"):
            runs = [r for r in results if series_of(r) == name]
            ax.scatter([scale(r[key]) for r in runs], [r["mean_accuracy"] for r in runs], marker=marker,
                       label=f"{name} (short run)")
            # Labels on the left only: the runs' memory differs by fractions of a MB and their labels would
            # pile up on the right; a point on the right sits at the same height as its labelled twin.
            for r in runs if key == "trainable_parameters" else ():
                ax.annotate(f"r{r['r']} α{r['alpha']:.3g}", (scale(r[key]), r["mean_accuracy"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        for (name, point), marker in zip((points or {}).items(), "*PXD"):
            ax.scatter([scale(point[key])], [point["mean_accuracy"]], marker=marker, s=120, label=name)
        if key == "trainable_parameters":  # parameters span orders of magnitude; memory does not
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    highest = max([r["mean_accuracy"] for r in results] + [p["mean_accuracy"] for p in (points or {}).values()])
    axes[0].set_ylabel("mean held-out accuracy")
    axes[0].set_ylim(0, min(1.05, highest + 0.15))
    # Under the panels, not on them: the right panel's points crowd where a legend would sit.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(2, len(labels)), frameon=False)
    figure.suptitle("short sweep runs and full-length runs on the same axes: compare short runs with each other",
                    fontsize=9)
    rows = -(-len(labels) // 2)
    figure.tight_layout(rect=(0, 0.05 + 0.045 * rows, 1, 1))  # room below for the legend's rows
    return figure


def grpo_curves(runs: dict[str, dict], title: str = "GRPO: what to watch while it trains"):
    """For each run (label -> {"log_history": a GRPOTrainer's, "heldout": [{"step", "accuracy", "kl"}, ...]}):
    the mean reward of the sampled answers, held-out accuracy, the KL from the starting policy, completion
    length and the logged loss, over steps. Reward and held-out accuracy are the curves to read; the loss hovers
    near zero by construction."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 5, figsize=(16, 3.3))
    logged = [("reward", "reward of the samples", 0), ("completions/mean_length", "completion length (tokens)", 3),
              ("loss", "logged loss", 4)]
    tracked = [("accuracy", "held-out accuracy (greedy)", 1), ("kl", "KL from the start (nats)", 2)]
    for label, run in runs.items():
        rows = [row for row in run["log_history"] if "reward" in row]
        for key, name, panel in logged:
            axes[panel].plot([row["step"] for row in rows], [row[key] for row in rows], marker=".", label=label)
            axes[panel].set(title=name, xlabel="step")
        for key, name, panel in tracked:
            points = [p for p in run["heldout"] if key in p]
            axes[panel].plot([p["step"] for p in points], [p[key] for p in points], marker="o", label=label)
            axes[panel].set(title=name, xlabel="step")
    for panel in (0, 1):
        axes[panel].set_ylim(-0.03, 1.03)
    axes[4].axhline(0, color="grey", linewidth=0.8, linestyle="--")
    for ax in axes:
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


def pass_at_k(curves: dict[str, dict[int, float]], title: str = "pass@k on the held-out problems"):
    """pass@k against k (log scale) for each model: label -> {k: share of problems with a right answer among k
    samples}. Where a curve starts is what the model usually does; where it ends, what it can do."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6, 3.6))
    for label, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(xlabel="k (answers sampled, temperature 1)", ylabel="at least one right", ylim=(-0.03, 1.03),
           title=title)
    ax.grid(alpha=0.3)
    _legend_below(ax, len(curves))
    return figure


def eval_overview(reports: list, title: str = "every model on the same held-out questions (bars: 95% intervals)"):
    """One panel per kind of figure: the task figures (accuracy and field F1), the fact recall, the held-out
    perplexity; a bar per model with its bootstrap interval. ``reports``: ``harness.Report`` objects."""
    from shared.evaluation.harness import FIGURES

    plt = pyplot()
    panels = (("closed_qa", "extraction", "extraction_f1", "arithmetic"), ("fact_recall",), ("perplexity",))
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw={"width_ratios": [4, 1.3, 1.3]})
    width = 0.8 / len(reports)
    for ax, figures in zip(axes, panels):
        for i, report in enumerate(reports):
            xs = [f + (i - (len(reports) - 1) / 2) * width for f in range(len(figures))]
            values = [report.value(name) for name in figures]
            intervals = [report.interval(name) for name in figures]
            errors = [[v - low for v, (low, _) in zip(values, intervals)],
                      [high - v for v, (_, high) in zip(values, intervals)]]
            ax.bar(xs, values, width, yerr=errors, capsize=2, label=report.model, color=f"C{i}")
        ax.set_xticks(range(len(figures)), [FIGURES[name][0].split(": ", 1)[-1] for name in figures], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set(ylim=(0, 1.05), ylabel="share right (F1: mean)", title="three task types")
    axes[1].set(ylim=(0, 1.05), title="forgetting: facts")
    axes[2].set(ylabel="lower is better", title="forgetting: prose")
    figure.suptitle(title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(reports), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


def forgetting_curve(points: list[dict], title: str = "learning the new task, forgetting the old ones"):
    """Over training steps: the new task's held-out accuracy (A, thick) and B (thick, black): the mean of each
    old task's and the base model's fact recall (dashed). ``points``: ``forgetting.retention_tracker(...).points``."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6.5, 3.6))
    steps = [p["step"] for p in points]
    ax.plot(steps, [p["A"] for p in points], marker="o", linewidth=2.5, color="C3", label="A: two-step problems")
    ax.plot(steps, [p["B"] for p in points], marker="o", linewidth=2.5, color="black", label="B: the mean of these")
    labels = {"closed_qa": "closed QA", "extraction": "extraction", "arithmetic": "arithmetic (one step)",
              "fact_recall": "fact recall"}
    for i, (key, label) in enumerate(labels.items()):
        ax.plot(steps, [p[key] for p in points], marker=".", linestyle="--", color=f"C{i}", label=f"B: {label}")
    ax.set(xlabel="training step (SFT on task A alone)", ylabel="held-out accuracy", ylim=(-0.03, 1.03), title=title)
    ax.grid(alpha=0.3)
    _legend_below(ax, 3)
    return figure


def forgetting_tradeoff(runs: dict[str, list[dict]], start: dict, plain: dict,
                        title: str = "what each remedy keeps of B, and what it costs of A"):
    """One line per remedy through its strengths: the new task's accuracy (A, x) against the old tasks' (B, y),
    with the model before (start) and the fine-tune with no remedy (plain), where every line starts: each remedy
    at strength 0. ``runs``: remedy -> [{"strength", "A", "B"}, ...] in order of strength."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6.5, 4))
    for i, (remedy, points) in enumerate(runs.items()):
        ax.plot([plain["A"]] + [p["A"] for p in points], [plain["B"]] + [p["B"] for p in points], color=f"C{i}",
                marker="o", markevery=list(range(1, len(points) + 1)), label=remedy)
        for p in points:
            ax.annotate(f"{p['strength']:g}", (p["A"], p["B"]), textcoords="offset points",
                        xytext=(4, 4 - 11 * i), fontsize=7, color=f"C{i}")   # each remedy's labels at its own height
    ax.scatter([start["A"]], [start["B"]], marker="s", color="black", zorder=3, label="before (SFT model)")
    ax.scatter([plain["A"]], [plain["B"]], marker="X", s=80, color="C3", zorder=3, label="no remedy")
    ax.axhline(plain["B"] + (start["B"] - plain["B"]) / 2, color="grey", linestyle=":", linewidth=1)
    ax.text(0.01, plain["B"] + (start["B"] - plain["B"]) / 2, " half of B's loss recovered", fontsize=7,
            color="grey", va="bottom", transform=ax.get_yaxis_transform())
    ax.set(xlabel="A: new task, held-out accuracy", ylabel="B: old tasks and facts (mean)", title=title,
           xlim=(-0.03, 1.03))
    ax.grid(alpha=0.3)
    _legend_below(ax, 3)
    return figure


FLAW_COLOURS = {"duplicate": "C0", "near_duplicate": "C9", "paraphrase": "C4", "leaked": "C1", "off_format": "C7",
                "wrong_answer": "C8", "clean": "C3"}


def curation_funnel(table, start: int, title: str = "what each stage removed, by what was wrong with it"):
    """One stacked bar per curation stage, in order: the examples it removed, coloured by the flaw the dirty set's
    labels give them (``clean``, in red: examples it should have kept), and how many it left. ``table``: a
    ``Funnel.table()``; `start`: the examples before the first stage."""
    plt = pyplot()
    stages = list(table.index)
    figure, ax = plt.subplots(figsize=(7, 0.45 * len(stages) + 1.6))
    left = [0] * len(stages)
    for flaw, colour in FLAW_COLOURS.items():
        if flaw not in table or not table[flaw].any():
            continue
        counts = list(table[flaw])
        ax.barh(range(len(stages)), counts, left=left, color=colour, label=flaw.replace("_", " "))
        left = [a + b for a, b in zip(left, counts)]
    for i, kept in enumerate(table["kept"]):
        ax.text(left[i], i, f"  {kept} left", va="center", fontsize=8)
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    ax.set(xlabel=f"examples removed (of {start} in the raw set)", title=title, xlim=(0, max(left) * 1.25 + 1))
    _legend_below(ax, 4)
    return figure


def framework_runs(runs: dict[str, dict], base: dict[str, float] | None = None,
                   title: str = "the same fine-tune, tool by tool"):
    """Rung 11: held-out accuracy per task, one bar per tool (the base model's too, when given), beside each run's
    seconds and peak memory. ``runs``: name -> {"tool", "accuracy": {task: share}, "seconds", "peak_mb"}."""
    plt = pyplot()
    figure, (accuracy_ax, seconds_ax, memory_ax) = plt.subplots(
        1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2.4, 1, 1]})
    accuracies = {**({"base model": base} if base else {}), **{run["tool"]: run["accuracy"] for run in runs.values()}}
    before_after(accuracies, title=title, ax=accuracy_ax)
    tools = [run["tool"] for run in runs.values()]
    for ax, key, label in ((seconds_ax, "seconds", "seconds (start included)"), (memory_ax, "peak_mb", "peak MB")):
        values = [run[key] for run in runs.values()]
        bars = ax.barh(tools, values, color="tab:gray")
        ax.bar_label(bars, labels=[f" {v:,.0f}" for v in values], fontsize=8)
        ax.set_xlim(0, max(values) * 1.3)
        ax.invert_yaxis()
        ax.set_title(label)
    memory_ax.set_yticks([])
    figure.tight_layout()
    return figure


def ddp_losses(runs: dict[str, dict], title: str = "one process, two processes: the same global batch"):
    """Rung 11: the training loss of each `accelerate launch` run, step by step (``runs``: name -> its run.json)."""
    plt = pyplot()
    _, ax = plt.subplots(figsize=(6, 3))
    for (name, run), style in zip(runs.items(), ("-", "--", ":")):
        label = f"{run['processes']} process{'es' if run['processes'] > 1 else ''} x {run['per_process_batch']}"
        ax.plot(range(1, len(run["losses"]) + 1), run["losses"], style, marker="." if style == "-" else None,
                label=label)
    ax.set(xlabel="step", ylabel="training loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def sharding_memory(stages: dict[str, dict[str, float]], title: str = "GB on each GPU, by ZeRO stage"):
    """Rung 11: stacked bars, one per sharding stage: each GPU's weights, gradients and optimiser state (GB)."""
    plt = pyplot()
    _, ax = plt.subplots(figsize=(6, 2.8))
    names = list(stages)
    left = [0.0] * len(names)
    for kind in ("weights", "gradients", "optimizer"):
        values = [stages[name][kind] for name in names]
        ax.barh(names, values, left=left, label=kind)
        left = [a + b for a, b in zip(left, values)]
    for row, total in enumerate(left):
        ax.text(total, row, f" {total:,.1f} GB", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="GB per GPU", title=title, xlim=(0, max(left) * 1.25))
    _legend_below(ax, 3)
    return ax.figure
