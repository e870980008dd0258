from keras_msa.models.crosssent.crosssent import CrossSent
from keras_msa.models.crosssent.crosssent import LinearWarmupDecay
