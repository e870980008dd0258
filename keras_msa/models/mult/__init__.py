from keras_msa.models.mult.mult import MulT
