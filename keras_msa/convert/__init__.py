"""Converters from reference frameworks' checkpoints to keras_msa models.

`keras_msa.convert.mmsa` reads a `.pth` written by MMSA's training (without
torch, through the restricted unpickler of `keras_msa.data.safe_pickle`) and
builds the matching keras_msa model; one module per architecture maps the
weights (`mmsa_mult`, `mmsa_tfn`, `mmsa_lmf`).
"""
