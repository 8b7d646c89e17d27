"""Training: the SFT recipe (``sft``), LoRA (``lora``), 4-bit NF4 (``quantisation``), what a model costs in
memory (``memory``) and what a run records (``runs``)."""
