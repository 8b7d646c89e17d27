"""The tiny base model: pretraining on the tiny world's corpus (``pretrain``) and its model card (``card``)."""
