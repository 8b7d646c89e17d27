"""Notebook tooling: exercises generated from solutions (``exercises``), the Colab set-up cell (``colab``),
running a notebook with a time limit (``running``), the learner's graded functions (``graded``), and
``python -m shared.notebooks.cli`` (``make exercises``)."""
