import json, sys, tempfile
from shared.models import load_model, load_tokenizer
from shared.profiles import get_profile
from shared.evaluation.evals import evaluate_task
from shared.training.forgetting import a_and_b, replay_mixture
from shared.training.sft import sft_trainer
from shared.world import data
from shared.world.word_problems import fresh_problems
opts = dict(a.split("=") for a in sys.argv[1:])
p = get_profile(announce=False)
sft = opts["sft"]; tok = load_tokenizer(sft, profile=p)
new = data.load_task("two_step", "train")[:400]; old = data.mixed("train")
ex = replay_mixture(new, old, float(opts.get("replay", 0)))
with tempfile.TemporaryDirectory() as tmp:
    t = sft_trainer(load_model(sft, profile=p), tok, p, "forget", tmp, examples=ex, learning_rate=float(opts["lr"]),
                    num_train_epochs=float(opts["epochs"]))
    t.train()
    r = a_and_b(t.model, tok)
    r["A400"] = (r["A"] * 100 + evaluate_task(t.model, tok, "two_step", examples=fresh_problems(2718, 300)).accuracy * 300) / 400
print(json.dumps({"opts": opts, **r}))
