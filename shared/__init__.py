"""The course's helper package: profiles, models, data, generation, evals, plots, checking, notebooks.

Notebooks import what they need, e.g. ``from shared import evals, plots`` -- nothing is pasted between rungs.
"""
