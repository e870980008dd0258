from keras_msa.models.selfmm.selfmm import SelfMM
