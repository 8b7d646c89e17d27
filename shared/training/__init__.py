"""Training: the SFT recipe (``sft``), preference learning -- DPO and reward models (``preference``), RL from a
reward function (``grpo``), what all their trainers share (``recipe``), LoRA (``lora``), 4-bit NF4
(``quantisation``), what a model costs in memory (``memory``) and what a run records (``runs``)."""
