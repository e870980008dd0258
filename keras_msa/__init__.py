"""keras_msa: multimodal sentiment analysis for Keras 3 / TensorFlow."""

from keras_msa import layers
from keras_msa import losses
from keras_msa import metrics
from keras_msa import models
from keras_msa import preprocessing
from keras_msa import utils
from keras_msa.inference import predict

__version__ = "0.1.0"
