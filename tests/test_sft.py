"""shared.training.sft's trainer recipe on a 4-bit base: what TRL does to the adapter's precision, and the fp32 repair a
GPU without bf16 (a Colab T4, fp16 training) needs."""

import pytest
import torch

from shared.training import sft
from shared.training.lora import lora_config
from shared.models import load_model, load_tokenizer
from shared.profiles import PROFILES


@pytest.fixture
def qlora_trainer(tmp_path):
    profile = PROFILES["tiny"]
    model = load_model(profile.qlora_model, profile, four_bit=True)
    tokenizer = load_tokenizer(profile.qlora_model, profile)
    return sft.sft_trainer(model, tokenizer, profile, "qlora", tmp_path, peft_config=lora_config(r=4, alpha=8),
                           examples_per_task=4, max_steps=1)


def trainable_dtypes(model) -> set:
    return {p.dtype for p in model.parameters() if p.requires_grad}


def test_trl_puts_a_4bit_bases_adapter_in_bf16(qlora_trainer):
    # The reason for keep_trainable_weights_in_fp32: if TRL stops doing this, the repair is no longer needed.
    assert not qlora_trainer.args.fp16
    assert trainable_dtypes(qlora_trainer.model) == {torch.bfloat16}


def test_keeping_trainable_weights_in_fp32_leaves_the_frozen_4bit_weights_alone(qlora_trainer):
    model = qlora_trainer.model
    frozen = {name: (p.dtype, p.data_ptr()) for name, p in model.named_parameters() if not p.requires_grad}
    adapters = [name for name, p in model.named_parameters() if p.requires_grad]
    assert adapters and all("lora_" in name for name in adapters)

    assert sft.keep_trainable_weights_in_fp32(model) == len(adapters)
    assert trainable_dtypes(model) == {torch.float32}
    assert {name: (p.dtype, p.data_ptr()) for name, p in model.named_parameters() if not p.requires_grad} == frozen
    assert sft.keep_trainable_weights_in_fp32(model) == 0          # nothing left to change
    assert qlora_trainer.train().training_loss > 0                 # and it still trains
