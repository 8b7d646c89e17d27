"""The course's tasks and splits: one place that names them, for the generator, the loaders and the evals."""

TASKS = ("closed_qa", "extraction", "arithmetic")
SPLITS = ("train", "validation", "heldout")
TASK_TITLES = {"closed_qa": "closed QA", "extraction": "extraction (JSON)", "arithmetic": "arithmetic"}
