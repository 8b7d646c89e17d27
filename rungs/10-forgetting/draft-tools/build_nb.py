import nbformat
from nbformat.v4 import new_notebook, new_markdown_cell as md, new_code_cell as code


def graded(src):
    c = code(src)
    c.metadata["tags"] = ["graded"]
    return c


def answer(name, text):
    c = md(f"<!-- BEGIN ANSWER -->\n{text}\n<!-- END ANSWER -->")
    c.metadata["tags"] = ["answer", f"answer-{name}"]
    return c


cells = []
cells.append(md(r"""# Rung 10 — Catastrophic forgetting: what a fine-tune erases, and three ways to keep it

Rung 09's table showed it: the models fine-tuned after SFT on one narrow task lost tasks nobody was looking at.
Here you cause it on purpose and watch it happen step by step — fine-tune the SFT model on a new task, **A**
(two-step word problems), and measure the old ones, **B** (rung 02's three tasks and the base model's facts), as
it trains. Then you limit it three ways, each at a few strengths: **replay** of old examples, **EWC** (you write
its Fisher estimate and penalty), and **LoRA** — and read the trade-off between what each keeps of B and what it
costs of A.

**Time:** about 3 minutes on 2 idle CPU cores when rung 02 is done (tiny profile), a minute more when it trains
rung 02's model first; much more while something else keeps the cores busy · about 20 minutes on a Colab T4
(gpu profile).

**Done when** (`make check RUNG=10` verifies each):
1. the notebook runs top to bottom;
2. `replay_mixture` mixes old examples into new ones as asked, on lists you have not seen;
3. `fisher_diagonal` estimates the diagonal Fisher information of a model you have not seen, on examples you
   have not seen;
4. `ewc_penalty` computes the EWC penalty and carries its gradient back to the weights, on cases you have not
   seen;
5. the remedy you chose, reloaded by the checker, recovers **at least half** of what the unmitigated fine-tune
   lost of B, while its A stays within 5 points of the unmitigated fine-tune's — held out, and on new
   problems the checker makes;
6. your written answers are there (an instructor reads them)."""))
cells.append(code("""import json

import pandas as pd
import torch

from shared import plots
from shared.models import load_model
from shared.paths import outputs_dir
from shared.profiles import get_profile
from shared.training.forgetting import (a_and_b, anchor_weights, answer_loss, ewc_trainer_class,
                                        retention_tracker)
from shared.training.lora import lora_config
from shared.training.runs import SavedModel
from shared.training.sft import rung02_model, sft_trainer
from shared.world import data

profile = get_profile()                  # FT_PROFILE=tiny (default, CPU) or gpu
OUT = outputs_dir("10-forgetting")       # what this notebook saves goes here
_, tokenizer, sft_folder = rung02_model(profile, "10-forgetting")
sizes = profile.train("forget")
new_examples = data.load_task("two_step", "train")[:sizes["examples_per_task"]]   # task A
old_examples = data.mixed("train")                                                 # tasks B: rung 02's training set
CURVE = SWEEP = dict(limit=50, people=60)   # questions a task and people measured on the way; all of them at the end
print(f"A: {len(new_examples)} two-step problems to learn; B: {len(old_examples)} old examples to keep (or replay)")"""))

cells.append(md(r"""## 1. Forgetting, measured

Fine-tune every weight of the SFT model on the two-step problems alone (rung 07's task: "Ada has 7 acorns, finds
2 more, then gives away 4…" → "7 plus 2 is 9. 9 minus 4 is 5."), 150 steps at a constant rate. A tracker
measures A and B every 25 steps, on 50 held-out questions a task and 60 people's facts (section 6 measures on
all of them)."""))
cells.append(code("""def fine_tune(name, examples, stage="forget", callbacks=(), **options):
    \"\"\"SFT of a fresh copy of the SFT model on `examples` with the profile's `stage` sizes, saved under
    OUT/runs/<name> (a whole model, or a LoRA adapter alone); returns the trained model.\"\"\"
    trainer = sft_trainer(load_model(sft_folder, profile=profile), tokenizer, profile, stage, OUT / "trainer" / name,
                          examples=examples, **options)
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train()
    trainer.save_model(str(OUT / "runs" / name))
    tokenizer.save_pretrained(str(OUT / "runs" / name))
    return trainer.model


tracker = retention_tracker(tokenizer, every=25, **CURVE)
plain = fine_tune("unmitigated", new_examples, callbacks=[tracker])
plots.forgetting_curve(tracker.points);
pd.DataFrame(tracker.points).set_index("step").T"""))
cells.append(md(r"""What did it do to the old tasks? The same one-step arithmetic question and closed-QA question, before and after:"""))
cells.append(code("""from shared.evaluation.evals import evaluate_task, side_by_side

sft_model = load_model(sft_folder, profile=profile)
for task in ("arithmetic", "closed_qa"):
    examples = data.load_task(task, "heldout", limit=3)
    before, after = (evaluate_task(m, tokenizer, task, examples=examples) for m in (sft_model, plain))
    display(side_by_side(before, after))"""))
cells.append(md(r"""**What happened** (tiny profile, seed 0): A rose from 0% to over 90% within 150 steps, and B fell from
97% to about 54% — first and furthest on **arithmetic**, the old task most like the new one: within 25 steps it
falls from 98% to 30%, a one-step problem ("Rona had 1 feather and was given 9 more") answered with a second,
invented step. Closed QA loses more than half its answers, extraction a quarter, and the facts the base model
read go last (98% → 77% by the end). Nothing in the training loss showed it: the loss is on A alone, and A went
well.

The SFT model learned all of B in rung 02; nothing here told it to unlearn it. Gradient steps on A alone move
whichever weights lower A's loss, with no term for what those weights did before — **catastrophic forgetting**
(McCloskey & Cohen 1989; French 1999). Each remedy below adds that missing term in its own way."""))

cells.append(md(r"""## 2. Replay: keep showing it the old tasks

The bluntest remedy, and in practice the most used: mix some of the old training data into the new (Llama-style
continued pretraining keeps a share of the original mixture; Ibrahim et al. 2024 found a few percent of replay
enough to keep most of a model's old skills). Its strength is the fraction of old examples per new one.

**Write `replay_mixture(new, old, fraction, seed=0)`** → a list of examples:

* every example of `new`, once, and `round(fraction * len(new))` examples of `old` drawn **without replacement**
  with `random.Random(seed)` (`rng.sample`), all shuffled together with the same generator;
* `fraction = 0` gives the new examples alone (shuffled); a fraction below 0, or one asking for more old examples
  than there are, raises `ValueError` saying so."""))
cells.append(graded("""import random


def replay_mixture(new, old, fraction, seed=0):
    \"\"\"Every new example and round(fraction * len(new)) old ones drawn without replacement, shuffled (seeded).\"\"\"
    ### BEGIN SOLUTION
    if fraction < 0:
        raise ValueError(f"fraction is {fraction}: a share of the new examples, 0 or more")
    count = round(fraction * len(new))
    if count > len(old):
        raise ValueError(f"{count} old examples asked for, only {len(old)} there")
    rng = random.Random(seed)
    mixture = list(new) + rng.sample(list(old), count)
    rng.shuffle(mixture)
    return mixture
    ### END SOLUTION"""))
cells.append(code("""mixture = replay_mixture(new_examples, old_examples, 0.25)
print(len(mixture), "examples:", pd.Series([e["task"] for e in mixture]).value_counts().to_dict())
assert sorted(e["id"] for e in mixture if e["task"] == "two_step") == sorted(e["id"] for e in new_examples)

sweep = {"replay": [], "EWC": [], "LoRA": []}
for fraction in (0.1, 0.25, 0.5):
    trained = fine_tune(f"replay-{fraction:g}", replay_mixture(new_examples, old_examples, fraction))
    sweep["replay"].append({"strength": fraction, **a_and_b(trained, tokenizer, **SWEEP)})
pd.DataFrame(sweep["replay"]).set_index("strength")"""))

cells.append(md(r"""## 3. EWC: hold the weights the old tasks need

Replay needs the old data, and a longer run on more of it. **Elastic weight consolidation** (Kirkpatrick et al.
2017) needs the old data once, to measure which weights matter to it, and then only a penalty. Treat training on
B as having found weights $\theta^*$; a weight matters to B as much as B's loss curves around it, which the
diagonal of the **Fisher information** estimates:

$$F_i = \frac{1}{N} \sum_{n=1}^{N} \left( \frac{\partial \ell_n(\theta^*)}{\partial \theta_i} \right)^2,
\qquad \mathcal{L}(\theta) = \mathcal{L}_A(\theta) + \frac{\lambda}{2} \sum_i F_i \, (\theta_i - \theta^*_i)^2$$

with $\ell_n$ the loss of old example $n$ (here: the SFT loss of its answer, `answer_loss(model, tokenizer,
example)`, given). This is the *empirical* Fisher — gradients of the loss at the true answers; Kirkpatrick et al.
sampled answers from the model instead, which costs more and behaves much the same on a model that is mostly
right.

**Write `fisher_diagonal(model, tokenizer, examples)`** → a dict, parameter name → tensor shaped like it:

* one entry for every parameter that requires grad (`model.named_parameters()`), zeros to start;
* for each example: clear the gradients (`model.zero_grad()`), `answer_loss(model, tokenizer, example).backward()`,
  and add each parameter's `grad ** 2` (detached) to its entry; divide by the number of examples at the end;
* put the model in eval mode while you do (no dropout in a gradient you measure), and leave it as you found it:
  the same weights, gradients cleared, training mode as before.

**Write `ewc_penalty(model, fisher, anchor)`** → a scalar tensor: $\sum_i F_i (\theta_i - \theta^*_i)^2$ over the
parameters named in `fisher` (`anchor` holds $\theta^*$ under the same names). It is added to the loss, so it
must carry its gradient back to the weights: no `.item()`, no `.detach()`. `ewc_trainer_class` adds
$\frac{\lambda}{2}\,$ your penalty to TRL's SFT loss (a subclass of `SFTTrainer` whose `compute_loss` adds it)."""))
cells.append(graded("""def fisher_diagonal(model, tokenizer, examples):
    \"\"\"The diagonal empirical Fisher of the old tasks: per trainable parameter, mean over examples of grad**2.\"\"\"
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    weights = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in weights.items()}
    for example in examples:
        model.zero_grad()
        answer_loss(model, tokenizer, example).backward()
        for name, p in weights.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
    model.zero_grad()
    model.train(was_training)
    return {name: value / len(examples) for name, value in fisher.items()}
    ### END SOLUTION


def ewc_penalty(model, fisher, anchor):
    \"\"\"sum_i F_i (theta_i - anchor_i)^2 over the parameters named in fisher, as a tensor with its gradient.\"\"\"
    ### BEGIN SOLUTION
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, p in model.named_parameters():
        if name in fisher:
            total = total + (fisher[name] * (p - anchor[name]) ** 2).sum()
    return total
    ### END SOLUTION"""))
cells.append(md(r"""Check both against the course's on the SFT model and 64 old examples, then train with the penalty at three
strengths. $\lambda$ is large because the Fisher is small: summed over all 3.4M weights it comes to about 0.2."""))
cells.append(code("""from shared.training import forgetting

fisher_examples = random.Random(0).sample(old_examples, 64)
fisher = fisher_diagonal(sft_model, tokenizer, fisher_examples)
expected = forgetting.fisher_diagonal(sft_model, tokenizer, fisher_examples)
assert fisher.keys() == expected.keys() and all(torch.allclose(fisher[k], expected[k], rtol=1e-4, atol=1e-12)
                                                 for k in fisher), "differs from the course's Fisher"
anchor = anchor_weights(sft_model)
moved = load_model(sft_folder, profile=profile)
with torch.no_grad():
    for p in moved.parameters():
        p.add_(0.01 * torch.randn_like(p))
assert torch.allclose(ewc_penalty(moved, fisher, anchor), forgetting.ewc_penalty(moved, fisher, anchor), rtol=1e-5)
assert ewc_penalty(moved, fisher, anchor).requires_grad, "the penalty must carry its gradient back to the weights"
print(f"✓ the course's Fisher and penalty; total Fisher {sum(f.sum() for f in fisher.values()):.3f}")
top = sorted(((f.mean().item(), name) for name, f in fisher.items()), reverse=True)[:5]
print("parameters B depends on most (mean Fisher):", [name for _, name in top])

for strength in (1e5, 1e6, 1e7):
    trained = fine_tune(f"EWC-{strength:g}", new_examples,
                        trainer_class=ewc_trainer_class(ewc_penalty, fisher, anchor, strength))
    sweep["EWC"].append({"strength": strength, **a_and_b(trained, tokenizer, **SWEEP)})
pd.DataFrame(sweep["EWC"]).set_index("strength")"""))

cells.append(md(r"""## 4. LoRA: change less

A low-rank adapter cannot move the weights far: every change is $\frac{\alpha}{r} BA$ of rank $r$, on the layers it
targets. Biderman et al. (2024, "LoRA learns less and forgets less") measured exactly that trade on code and
maths fine-tunes of Llama-2: less learned of the new domain, more kept of the old. Its strength is the rank —
lower is stronger. (The adapter trains at the profile's `forget_lora` rate, larger than a full fine-tune's.)"""))
cells.append(code("""for rank in (32, 8, 2):
    trained = fine_tune(f"LoRA-{rank}", new_examples, stage="forget_lora",
                        peft_config=lora_config(r=rank, alpha=2 * rank))
    sweep["LoRA"].append({"strength": rank, **a_and_b(trained, tokenizer, **SWEEP)})
pd.DataFrame(sweep["LoRA"]).set_index("strength")"""))

cells.append(md(r"""## 5. The trade-off

Each remedy as a curve through its strengths: A's accuracy across, B's up. The black square is the SFT model
before any of this, the red cross the fine-tune with no remedy; the dotted line is where half of B's loss is
won back."""))
cells.append(code("""start, unmitigated = tracker.points[0], tracker.points[-1]
plots.forgetting_tradeoff(sweep, start, unmitigated);
pd.DataFrame([{"remedy": remedy, "strength": p["strength"], "A": p["A"], "B": p["B"],
               "B recovered": (p["B"] - unmitigated["B"]) / (start["B"] - unmitigated["B"]),
               **{task: p[task] for task in ("closed_qa", "extraction", "arithmetic", "fact_recall")}}
              for remedy, points in sweep.items() for p in points]).round(2)"""))
cells.append(md(r"""**What the plot says** (tiny profile, seed 0; 50 questions a task, so a few points either way is noise):

* **Replay** wins back the most of B: a tenth of an old example per new one already wins back about half of
  what was lost with A untouched, and half an old example per new one brings arithmetic back too (80% against
  about 20%) — for a few points of A at this length of run. It costs a longer run, and the old data.
* **EWC** keeps closed QA, extraction and the facts almost whole at the largest strength — but not arithmetic,
  and A pays (82%). One-step and two-step problems look alike; A's examples ask for a second step, and no
  penalty on the weights can tell the model *which* problems want one. Replay can: it shows both kinds side by
  side.
* **LoRA** at a low rank learns less A and keeps more of closed QA and the facts; arithmetic is lost at every
  rank. A move along the trade-off rather than above it — as Biderman et al. found."""))

cells.append(md(r"""## 6. Your remedy

Choose the remedy you would ship: `REMEDY` one of `"replay"`, `"EWC"`, `"LoRA"`, a `STRENGTH`, and `EPOCHS`, how
long it trains (the sweep trained each for the profile's 3). A remedy may train longer than the fine-tune it
mends: replay has more examples to get through and two kinds of problem to tell apart, and a few of the
sweep's points lost A for it. The next cell trains it (or takes the sweep's run of the same settings), then
measures it, the unmitigated fine-tune and the SFT model on **every** held-out question. The checker reloads
the three and measures them again: yours must win back at least half of what the unmitigated fine-tune lost of
B, with its A within 5 points of the unmitigated fine-tune's. (The checker measures A on the 100 held-out
problems and 300 new ones: on 100 alone, two models that solve the same share differ by several points by
chance.)"""))
cells.append(code("""### BEGIN SOLUTION
REMEDY, STRENGTH, EPOCHS = "replay", 0.5, 4
### END SOLUTION
name = f"{REMEDY}-{STRENGTH:g}" + ("" if EPOCHS == sizes["num_train_epochs"] else f"-{EPOCHS}-epochs")
if not (OUT / "runs" / name).is_dir():              # settings the sweep did not try: train them now
    if REMEDY == "replay":
        fine_tune(name, replay_mixture(new_examples, old_examples, STRENGTH), num_train_epochs=EPOCHS)
    elif REMEDY == "EWC":
        fine_tune(name, new_examples, num_train_epochs=EPOCHS,
                  trainer_class=ewc_trainer_class(ewc_penalty, fisher, anchor, STRENGTH))
    elif REMEDY == "LoRA":
        fine_tune(name, new_examples, stage="forget_lora", num_train_epochs=EPOCHS,
                  peft_config=lora_config(r=STRENGTH, alpha=2 * STRENGTH))
    else:
        raise ValueError(f"REMEDY is {REMEDY!r}: choose 'replay', 'EWC' or 'LoRA'")
chosen = {"start": SavedModel("SFT", "02-sft", sft_folder),
          "unmitigated": SavedModel("no remedy", "10-forgetting", OUT / "runs" / "unmitigated"),
          "mitigated": SavedModel(name, "10-forgetting", OUT / "runs" / name) if REMEDY != "LoRA"
                       else SavedModel(name, "10-forgetting", sft_folder, adapter=OUT / "runs" / name)}
final = {role: a_and_b(model.load(profile), tokenizer) for role, model in chosen.items()}
recovered = (final["mitigated"]["B"] - final["unmitigated"]["B"]) / (final["start"]["B"] - final["unmitigated"]["B"])
print(f"{name}: B recovered {recovered:.0%}; A {final['unmitigated']['A']:.0%} with no remedy, "
      f"{final['mitigated']['A']:.0%} with yours (held out)")
pd.DataFrame(final).T.rename(index={"start": "SFT model", "unmitigated": "no remedy", "mitigated": name})"""))

cells.append(md(r"""## 7. In your own words

Two short answers (about 100–150 words each):

1. **The remedy you chose.** How it works, what it cost here (A, B, time, data), and when you would choose
   another one.
2. **Which old task each remedy kept and which it did not**, from section 5's table — and why you think the
   task that was hardest to keep was."""))
cells.append(answer("my-remedy", """Replay at a fraction of 0.5, trained for 4 epochs: every two-step problem, plus one old example (from rung
02's closed QA, extraction and arithmetic) for every two new ones, shuffled together. The loss has a term for
the old tasks again, so the steps that would have overwritten them are pulled back. It won back about 70% of
what the unmitigated fine-tune lost of B, arithmetic most of all. At the sweep's 3 epochs it cost A a few
points, because the model now has to tell one-step problems from two-step ones; one more epoch paid that back.
The cost is twice the training steps and needing rung 02's data at hand. Without the old data I would use EWC,
which needs it only once to compute the Fisher, or a low-rank adapter when I can accept learning less of A."""))
cells.append(answer("which-task", """EWC kept closed QA, extraction and the facts at its largest strength but not one-step arithmetic, and LoRA
at high rank lost arithmetic and closed QA as a full fine-tune does. Replay was the only remedy that brought
arithmetic back. I think arithmetic is hardest because it is the old task most like the new one: the prompts
look the same, a person with some items who gives some away, and the new task's answers always have a second
step. The model has to learn a rule that depends on the prompt (one operation or two), and only replay shows it
both kinds of prompt side by side. A weight penalty keeps weights near their old values but cannot teach the
distinction, so the cheapest way to lower A's loss, writing a second step everywhere, still wins."""))

cells.append(md(r"""## 8. Save what the checker needs

The checker reloads the SFT model, the unmitigated fine-tune and yours, measures A and B on every held-out
question (and A on new problems it makes), and compares with what is saved here."""))
cells.append(code("""metrics = {
    "profile": profile.name,
    "remedy": REMEDY,
    "strength": STRENGTH,
    "epochs": EPOCHS,
    "models": {role: model.describe(OUT.parent) for role, model in chosen.items()},
    "final": final,
    "recovered": recovered,
    "curve": tracker.points,
    "sweep": sweep,
}
(OUT / "metrics.json").write_text(json.dumps(metrics, indent=1))
print(json.dumps({k: metrics[k] for k in ("remedy", "strength", "epochs", "recovered")}, indent=1))
print(f"\\nsaved to {OUT}. Now run:  make check RUNG=10")"""))

nb = new_notebook(cells=cells)
nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
               "language_info": {"name": "python"}}
nbformat.write(nb, "/work/main/solutions/10-forgetting.ipynb")
print("written", len(cells), "cells")
