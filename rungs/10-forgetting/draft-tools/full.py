import sys, json
from shared.models import load_model, load_tokenizer
from shared.profiles import get_profile
from shared.evaluation.evals import evaluate_task
from shared.training.forgetting import a_and_b
from shared.world.word_problems import fresh_problems
p=get_profile(announce=False)
res={}
for f in sys.argv[1:]:
    m=load_model(f, profile=p); t=load_tokenizer(f, profile=p)
    r=a_and_b(m,t); r["A400"]=(r["A"]*100+evaluate_task(m,t,"two_step",examples=fresh_problems(2718,300)).accuracy*300)/400
    res[f]=r; print(f, json.dumps(r), flush=True)
