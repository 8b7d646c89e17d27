"""The 7B QLoRA benchmark's parts that need no GPU: batching, packing, the model's size, the report, and a
whole run of both recipes on a tiny Llama on the CPU (real bitsandbytes NF4 layers, real PEFT LoRA)."""

import dataclasses
import importlib.util
import math
import sys

import pytest

from shared.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("qlora_7b", REPO_ROOT / "bench" / "qlora_7b.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["qlora_7b"] = bench  # dataclasses look their module up there
spec.loader.exec_module(bench)

TINY_SHAPE = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                  tie_word_embeddings=False)
TINY_SETUP = dict(bench.SETUP, seq_len=32, batch_size=2, grad_accum=2, warmup_steps=1, measured_steps=1)


def test_lengths_are_reproducible_and_within_the_cut_off():
    chat = bench.example_lengths("chat", 500, 1024, seed=0)
    assert chat == bench.example_lengths("chat", 500, 1024, seed=0)
    assert chat != bench.example_lengths("chat", 500, 1024, seed=1)
    assert min(chat) >= 32 and max(chat) <= 1024
    assert 200 < sorted(chat)[250] < 450  # a median of short, chat-sized examples
    assert bench.example_lengths("full", 5, 1024) == [1024] * 5
    with pytest.raises(ValueError, match="unknown length mix"):
        bench.example_lengths("long", 5, 1024)


def test_padded_batches_hold_batch_size_examples_each():
    lengths = [5, 9, 3, 7, 2, 8, 1]
    assert bench.padded_batches(lengths, 2) == [[5, 9], [3, 7], [2, 8]]


def test_packing_keeps_examples_whole_in_order_and_within_the_budget():
    lengths = bench.example_lengths("chat", 300, 1024)
    batches = bench.packed_batches(lengths, 4096)
    flat = [n for batch in batches for n in batch]
    assert flat == lengths[: len(flat)]            # nothing cut, dropped from the middle or reordered
    assert all(sum(batch) <= 4096 for batch in batches)
    # each batch is full: the next example would not have fitted
    assert all(sum(batch) + nxt > 4096 for batch, nxt in zip(batches, [b[0] for b in batches[1:]]))


def test_position_ids_restart_at_every_example():
    assert bench.position_ids([3, 2, 1]) == [0, 1, 2, 0, 1, 0]


def test_padding_share_is_what_packing_removes():
    lengths = bench.example_lengths("chat", 400, 1024)
    padded = bench.padded_batches(lengths, 4)
    assert bench.padding_share(padded, packing=False) > 0.2
    assert bench.padding_share(bench.packed_batches(lengths, 4096), packing=True) == 0
    assert bench.padding_share(bench.padded_batches([1024] * 8, 4), packing=False) == 0
    assert bench.padding_share([[2, 4]], packing=False) == pytest.approx(1 - 6 / 8)


def test_the_model_is_seven_billion_parameters():
    assert bench.parameter_count(bench.LLAMA2_7B) == 6_738_415_616  # Llama-2-7B's published size


def test_plan_runs_without_a_gpu(capsys):
    assert bench.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert "6.74B parameters" in out and "chat  plain" in out and "padding 0%" in out


def test_without_a_gpu_the_benchmark_says_so_and_exits_2(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_table_reports_both_recipes_and_their_ratio():
    results = [dict(recipe="plain", lengths="chat", tokens_per_s=2000.0, peak_allocated_gb=9.1, padding_share=0.38,
                    liger="off"),
               dict(recipe="course", lengths="chat", tokens_per_s=3000.0, peak_allocated_gb=6.5, padding_share=0.0,
                    liger="on (0.8.5)")]
    text = bench.table(results, "Some GPU")
    assert "Some GPU" in text and "| chat | plain | 2,000 | 9.10 | 38% | off |" in text
    assert "course / plain tokens/s = 1.50x" in text


@pytest.mark.parametrize("recipe", ["plain", "course"])
def test_both_recipes_train_a_tiny_nf4_llama_on_the_cpu(recipe):
    import bitsandbytes as bnb

    cpu_recipe = dataclasses.replace(bench.RECIPES[recipe], optimizer="adamw", liger=False)  # both need CUDA
    result = bench.run_one(cpu_recipe, "chat", TINY_SHAPE, TINY_SETUP, device="cpu")
    assert all(math.isfinite(loss) for loss in result["losses"])
    # LoRA r=8 on 7 projections of each of 2 layers: r * (in + out) parameters each
    per_layer = 8 * ((64 + 64) * 4 + (64 + 128) * 3)
    assert result["trainable_parameters"] == 2 * per_layer
    assert result["measured_tokens"] > 0 and result["tokens_per_s"] > 0
    model, _ = bench.build_model(cpu_recipe, TINY_SHAPE, TINY_SETUP, device="cpu")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_packed_examples_do_not_see_each_other():
    """Two examples packed into one row give the loss they give in two padded rows: attention stays inside each."""
    plain = dataclasses.replace(bench.RECIPES["plain"], optimizer="adamw", liger=False, upcast_frozen_to_fp32=False,
                                reentrant_checkpointing=False)
    packed = dataclasses.replace(plain, packing=True)
    losses = [bench.run_one(r, "full", TINY_SHAPE, TINY_SETUP, device="cpu")["losses"] for r in (plain, packed)]
    assert losses[0] == pytest.approx(losses[1], abs=1.5e-3)  # leaking attention moves it by ~1e-2


def test_committed_results_are_the_ones_the_bench_readme_quotes():
    import json

    measured = json.loads((REPO_ROOT / "bench" / "results" / "qlora_7b.json").read_text())
    readme = (REPO_ROOT / "bench" / "README.md").read_text()
    assert measured["device"] in readme
    for r in measured["results"]:
        assert f"| {r['lengths']} | {r['recipe']} | {r['tokens_per_s']:,.0f} | {r['peak_allocated_gb']:.2f} |" in readme
