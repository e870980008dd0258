"""Reusable layers. One layer per file, named after its class in snake_case."""

from keras_msa.layers.masked_mean_pooling import MaskedMeanPooling
