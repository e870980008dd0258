from keras_msa.models.lmf.lmf import LMF
