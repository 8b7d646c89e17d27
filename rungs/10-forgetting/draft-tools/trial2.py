import json, random, sys, tempfile
from shared.models import load_model, load_tokenizer
from shared.profiles import get_profile
from shared.evaluation.evals import evaluate_task
from shared.training.forgetting import (a_and_b, replay_mixture, fisher_diagonal, anchor_weights, ewc_penalty,
                                        ewc_trainer_class)
from shared.training.sft import sft_trainer
from shared.world import data
from shared.world.word_problems import fresh_problems
opts = dict(a.split("=") for a in sys.argv[1:])
p = get_profile(announce=False)
sft = opts["sft"]; tok = load_tokenizer(sft, profile=p)
new = data.load_task("two_step", "train")[:400]; old = data.mixed("train")
pool = [e for e in old if e["task"] in opts.get("pool", "closed_qa,extraction,arithmetic").split(",")]
ex = replay_mixture(new, pool, float(opts.get("replay", 0)))
kw = {}
if float(opts.get("ewc", 0)) > 0:
    m0 = load_model(sft, profile=p)
    fisher = fisher_diagonal(m0, tok, random.Random(0).sample(old, 64)); anchor = anchor_weights(m0)
    kw["trainer_class"] = ewc_trainer_class(ewc_penalty, fisher, anchor, float(opts["ewc"]))
with tempfile.TemporaryDirectory() as tmp:
    t = sft_trainer(load_model(sft, profile=p), tok, p, "forget", tmp, examples=ex,
                    num_train_epochs=float(opts.get("epochs", 3)), **kw)
    t.train()
    r = a_and_b(t.model, tok)
    r["A400"] = (r["A"] * 100 + evaluate_task(t.model, tok, "two_step", examples=fresh_problems(2718, 300)).accuracy * 300) / 400
print(json.dumps({"opts": {k: v for k, v in opts.items() if k != "sft"}, **{k: round(v, 3) for k, v in r.items()}}))
