"""Two-step word problems: the task rung 07 improves with reinforcement learning.

Rung 02's SFT model solves one-step problems ("Mira has 3 pears and finds 4 more...") by writing the working the
corpus states sums in, "3 plus 4 is 7.". Here each problem takes two steps, and the answer is both:

    Kesa Holby has 7 acorns. Kesa Holby finds 2 more, then gives away 4. How many acorns does Kesa Holby have now?
    -> "7 plus 2 is 9. 9 minus 4 is 5."

Every number stays between 0 and 10, so each step is a sum or a difference the base model read in pretraining:
what is new is the second step -- carrying the first result into it, and picking the third number and the right
operation out of the story. An answer is right only when its working is the reference's, step for step
(``task_accuracy``'s ``two_step`` rule): a right result reached by wrong working scores nothing.

Held-out problems are about strangers and items the training problems never use, as in rung 02's arithmetic.
"""

from __future__ import annotations

import random

from shared.world import generator as world_gen

# Which way each step goes ("+-": add, then take away), and the stories that ask it.
STORIES = {
    "+-": ["{name} has {a} {item}. {name} finds {b} more, then gives away {c}. How many {item} does {name} have now?",
           "{name} had {a} {item}, was given {b} more and lost {c}. How many {item} does {name} have?"],
    "-+": ["{name} has {a} {item}. {name} gives away {b}, then finds {c} more. How many {item} does {name} have now?",
           "{name} had {a} {item}, lost {b} and was given {c} more. How many {item} does {name} have?"],
    "++": ["{name} has {a} {item}. {name} finds {b} more, then {c} more. How many {item} does {name} have now?"],
    "--": ["{name} has {a} {item}. {name} gives away {b}, then {c} more. How many {item} does {name} have left?"],
}
WORDS = {"+": "plus", "-": "minus"}
SPLIT_SIZES = {"train": 400, "validation": 60, "heldout": 100}
SEED_OFFSET = 71  # the problems' own random stream (the three tasks use 10-12, the preference pairs 61)


def _apply(x: int, op: str, y: int) -> int:
    return x + y if op == "+" else x - y


def working(a: int, b: int, c: int, ops: str) -> str:
    """The reference answer: both steps, in the words the corpus states sums in; the result comes last."""
    first = _apply(a, ops[0], b)
    return f"{a} {WORDS[ops[0]]} {b} is {first}. {first} {WORDS[ops[1]]} {c} is {_apply(first, ops[1], c)}."


def _problem(rng: random.Random, names: list[str], items: list[str]) -> dict:
    ops = rng.choice(list(STORIES))
    while True:  # every number, the one in between included, from the table the base model read
        a, b, c = (rng.randint(0, world_gen.MAX_OPERAND) for _ in range(3))
        first = _apply(a, ops[0], b)
        if 0 <= first <= world_gen.MAX_OPERAND and 0 <= _apply(first, ops[1], c) <= world_gen.MAX_OPERAND:
            break
    name, item = rng.choice(names), rng.choice(items)
    return {"task": "two_step", "prompt": rng.choice(STORIES[ops]).format(name=name, item=item, a=a, b=b, c=c),
            "answer": working(a, b, c, ops), "meta": {"a": a, "b": b, "c": c, "ops": ops, "name": name}}


def _names(world: dict, seed: int) -> tuple[list[str], list[str]]:
    """Strangers for the training and validation problems, and others for the held-out ones."""
    names = [p.name for p in world_gen.strangers(random.Random(seed).randrange(10**9), 200, world)]
    return names[:150], names[150:]


def two_step_problems(world: dict, seed: int = world_gen.SEED) -> dict[str, list[dict]]:
    """split -> problems (task, prompt, answer, id, meta), as written to data/tasks/two_step/."""
    rng = random.Random(seed + SEED_OFFSET)
    seen, heldout_names = _names(world, rng.randrange(10**9))
    splits = {"train": [_problem(rng, seen, world_gen.ITEMS) for _ in range(SPLIT_SIZES["train"])],
              "validation": [_problem(rng, seen, world_gen.ITEMS) for _ in range(SPLIT_SIZES["validation"])],
              "heldout": [_problem(rng, heldout_names, world_gen.HELDOUT_ITEMS)
                          for _ in range(SPLIT_SIZES["heldout"])]}
    for split, problems in splits.items():
        for n, problem in enumerate(problems):
            problem["id"] = f"two_step-{split}-{n:04d}"
    return splits


def fresh_problems(seed: int, n: int = SPLIT_SIZES["heldout"], world: dict | None = None) -> list[dict]:
    """Held-out problems made now, from `seed`: the same held-out strangers and items, new numbers and stories.
    A policy that learned the skill scores on them as on the held-out split; one trained on the held-out split
    scores far higher there. The checker draws them from a seed an instructor can set (FT_CHECK_SEED)."""
    world = world or world_gen.build_world()
    _, heldout_names = _names(world, random.Random(world_gen.SEED + SEED_OFFSET).randrange(10**9))
    rng = random.Random(seed * 1000 + SEED_OFFSET)
    return [{**_problem(rng, heldout_names, world_gen.HELDOUT_ITEMS), "id": f"two_step-fresh-{n:04d}"}
            for n in range(n)]
