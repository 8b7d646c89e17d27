"""Rung 10 prototype: fine-tune the SFT model on two_step (task A) and watch rung 02's tasks (B) over steps.
Usage: proto.py NAME [lr=3e-4] [epochs=2] [replay=0.0] [ewc=0] [lora_r=0] [examples=400] [every=25] [evaln=50]"""
import json, random, sys, tempfile, time

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from shared.evaluation.evals import evaluate_task
from shared.evaluation.probes import cloze_hits
from shared.models import load_model, load_tokenizer
from shared.profiles import get_profile
from shared.training.sft import sft_trainer
from shared.world import data
from shared.world.generator import build_world

name = sys.argv[1]
opts = dict(a.split("=") for a in sys.argv[2:])
lr = float(opts.get("lr", 3e-4)); epochs = float(opts.get("epochs", 2)); replay = float(opts.get("replay", 0))
ewc = float(opts.get("ewc", 0)); lora_r = int(opts.get("lora_r", 0)); n_new = int(opts.get("examples", 400))
every = int(opts.get("every", 25)); evaln = int(opts.get("evaln", 50)); sched = opts.get("sched", "constant")

profile = get_profile(announce=False)
SFT = opts.get("sft", "/tmp/r09out/02-sft/model")
tok = load_tokenizer(SFT, profile=profile)
model = load_model(SFT, profile=profile)
torch.manual_seed(0)
A = data.load_task("two_step", "heldout")
B = {t: data.load_task(t, "heldout", limit=evaln) for t in ("closed_qa", "extraction", "arithmetic")}
people = build_world()["people"][:60]


def measure(m):
    out = {"A": evaluate_task(m, tok, "two_step", examples=A).accuracy}
    for t, ex in B.items():
        out[t] = evaluate_task(m, tok, t, examples=ex).accuracy
    hits = cloze_hits(m, tok, people)
    out["facts"] = sum(sum(v) for v in hits.values()) / (4 * len(people))
    out["B"] = sum(out[t] for t in B) / 3
    return out


class Track(TrainerCallback):
    def __init__(self):
        self.points = []

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % every == 0:
            self.points.append({"step": state.global_step, **measure(model)})
            print(self.points[-1], flush=True)
            model.train()


new = data.load_task("two_step", "train")[:n_new]
rng = random.Random(0)
old = data.mixed("train")
mix = new + rng.sample(old, int(replay * n_new))
rng.shuffle(mix)

trainer_class = None
if ewc > 0:
    # diagonal Fisher on old data at the SFT weights
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    from shared.training.sft import prompt_completion_rows
    from shared.evaluation.generation import chat_ids
    batches = rng.sample(old, 64)
    model.eval()
    for e in batches:
        prompt = chat_ids(tok, [{"role": "user", "content": e["prompt"]}], add_generation_prompt=True)
        full = chat_ids(tok, [{"role": "user", "content": e["prompt"]}, {"role": "assistant", "content": e["answer"]}])
        ids = torch.tensor([full]); labels = ids.clone(); labels[:, :len(prompt)] = -100
        model.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        for n, p in model.named_parameters():
            fisher[n] += p.grad.detach() ** 2 / len(batches)
    model.zero_grad(); model.train()
    total = sum(f.sum() for f in fisher.values()).item(); print("fisher total", total)

    class EWCTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            penalty = sum((fisher[n] * (p - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
            if return_outputs:
                return result[0] + ewc / 2 * penalty, result[1]
            return result + ewc / 2 * penalty
    trainer_class = EWCTrainer

peft = None
if lora_r:
    from shared.training.lora import lora_config
    peft = lora_config(r=lora_r, alpha=2 * lora_r)

start = measure(model)
print("start", json.dumps(start), flush=True)
t0 = time.time()
with tempfile.TemporaryDirectory() as tmp:
    trainer = sft_trainer(model, tok, profile, "prime", tmp, peft_config=peft, examples=mix, trainer_class=trainer_class,
                          learning_rate=lr, num_train_epochs=epochs, lr_scheduler_type=sched)
    track = Track()
    trainer.add_callback(track)
    trainer.train()
    secs = time.time() - t0
    end = measure(trainer.model)
print("end", json.dumps(end), f"{secs:.0f}s steps {trainer.state.global_step}")
json.dump({"name": name, "opts": opts, "start": start, "end": end, "points": track.points, "seconds": secs},
          open(f"/tmp/g10/{name}.json", "w"), indent=1)
if opts.get("save"):
    trainer.model.save_pretrained(opts["save"]); tok.save_pretrained(opts["save"])
    from shared.world.word_problems import fresh_problems
    for seed in (2718, 5, 6):
        fresh = fresh_problems(seed, 300)
        print("fresh", seed, evaluate_task(trainer.model, tok, "two_step", examples=fresh).accuracy)
