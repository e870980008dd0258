"""Prediction on raw media: `keras_msa.predict(model_path, video=..., text=...)`."""

from keras_msa.inference.predict import NotARawMediaModelError
from keras_msa.inference.predict import Predictor
from keras_msa.inference.predict import predict
