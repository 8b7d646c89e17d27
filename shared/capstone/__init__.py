"""The capstone: a learner's own fine-tune measured by rung 09's harness (project.py) and documented by a model
card generated from the results (card.py), which `make check RUNG=capstone` reads back against the model."""
