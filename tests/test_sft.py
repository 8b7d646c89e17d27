"""shared.training.sft's trainer recipe on a 4-bit base: what TRL does to the adapter's precision, and the fp32 repair
that training without bf16 (on a CPU, or in fp16 on a Colab T4) needs."""

import pytest
import torch

from shared.training import sft
from shared.training.lora import lora_config
from shared.models import load_model, load_tokenizer
from shared.profiles import PROFILES


def _four_bit_model_and_tokenizer():
    profile = PROFILES["tiny"]
    return (load_model(profile.qlora_model, profile, four_bit=True), load_tokenizer(profile.qlora_model, profile))


@pytest.fixture
def trl_qlora_trainer(tmp_path):
    """TRL's own SFTTrainer on a 4-bit base, without the course's builder."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from shared.world import data

    model, tokenizer = _four_bit_model_and_tokenizer()
    rows = sft.prompt_completion_rows(data.load_task("closed_qa", "train", limit=4))
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, fp16=False, report_to=[], max_steps=1,
                     activation_checkpointing=False, dataset_num_proc=None)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                      peft_config=lora_config(r=4, alpha=8))


@pytest.fixture
def qlora_trainer(tmp_path):
    profile = PROFILES["tiny"]
    model, tokenizer = _four_bit_model_and_tokenizer()
    return sft.sft_trainer(model, tokenizer, profile, "qlora", tmp_path, peft_config=lora_config(r=4, alpha=8),
                           examples_per_task=4, max_steps=1)


def trainable_dtypes(model) -> set:
    return {p.dtype for p in model.parameters() if p.requires_grad}


def test_trl_puts_a_4bit_bases_adapter_in_bf16_even_when_training_in_fp32(trl_qlora_trainer):
    # The reason for keep_trainable_weights_in_fp32: if TRL stops doing this, the repair is no longer needed.
    assert not trl_qlora_trainer.args.bf16 and not trl_qlora_trainer.args.fp16
    assert trainable_dtypes(trl_qlora_trainer.model) == {torch.bfloat16}


def test_the_courses_builder_trains_the_adapter_in_fp32_off_bf16(qlora_trainer):
    """On the CPU (fp32 training) the builder puts TRL's bf16 adapter back in fp32: bf16 products cost a CPU
    about twice as much, and a T4's fp16 scaler cannot unscale bf16 gradients."""
    assert not qlora_trainer.args.bf16
    assert trainable_dtypes(qlora_trainer.model) == {torch.float32}


def test_keeping_trainable_weights_in_fp32_leaves_the_frozen_4bit_weights_alone(trl_qlora_trainer):
    model = trl_qlora_trainer.model
    frozen = {name: (p.dtype, p.data_ptr()) for name, p in model.named_parameters() if not p.requires_grad}
    adapters = [name for name, p in model.named_parameters() if p.requires_grad]
    assert adapters and all("lora_" in name for name in adapters)

    assert sft.keep_trainable_weights_in_fp32(model) == len(adapters)
    assert trainable_dtypes(model) == {torch.float32}
    assert {name: (p.dtype, p.data_ptr()) for name, p in model.named_parameters() if not p.requires_grad} == frozen
    assert sft.keep_trainable_weights_in_fp32(model) == 0          # nothing left to change
    assert trl_qlora_trainer.train().training_loss > 0             # and it still trains
