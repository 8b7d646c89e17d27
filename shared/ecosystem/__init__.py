"""The open-source fine-tuning frameworks (rung 11), each in an environment of its own.

Axolotl, LLaMA-Factory and torchtune pin their own versions of torch, transformers, TRL and PEFT, none of them the
course's: installed into the course's environment they would break it. ``environments`` says what each one needs
and builds it under ``.ecosystem/<name>`` (`make ecosystem`), apart from ``.venv``.
"""
