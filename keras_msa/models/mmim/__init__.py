from keras_msa.models.mmim.mmim import MMIM  # noqa: F401
