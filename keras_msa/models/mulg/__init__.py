from keras_msa.models.mulg.mulg import MulG
