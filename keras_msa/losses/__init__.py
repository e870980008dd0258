"""Losses of the papers keras_msa implements; one class per file."""
