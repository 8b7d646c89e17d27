"""bench/run.py's arithmetic: every number a metrics.json holds, and the table over seeds (no notebook runs)."""

from __future__ import annotations

import importlib.util

import pytest

from shared import course
from shared.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("bench_run", REPO_ROOT / "bench" / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_numbers_in_a_metrics_file():
    metrics = {"profile": "tiny", "after": {"closed_qa": 0.96, "extraction": 0.95}, "train_seconds": 71.2,
               "ok": True, "memory": {"lora": {"total": 18}}, "nan": float("nan")}
    assert bench.numbers_in(metrics) == {"after.closed_qa": 0.96, "after.extraction": 0.95, "train_seconds": 71.2,
                                         "memory.lora.total": 18.0}


def test_over_seeds_prints_mean_worst_and_spread(monkeypatch, capsys):
    figures = {0: 0.96, 1: 0.90, 2: 0.93}
    seen = []

    def fake_run(rung, seed=None):
        seen.append(seed)
        return 10.0 + seed, {"after": {"extraction": figures[seed]}}, ""

    monkeypatch.setattr(bench, "run_once", fake_run)
    assert bench.over_seeds(course.rung("02"), [0, 1, 2]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("after.extraction"))
    assert seen == [0, 1, 2] and row.split()[1:] == ["0.96", "0.9", "0.93", "0.93", "0.9", "0.06"]


def test_seeds_need_one_rung_and_whole_numbers():
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0,1"])
    with pytest.raises(SystemExit):
        bench.main(["--rung", "02", "--seeds", "a,b"])
