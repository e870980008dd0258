from keras_msa.models.ssgdl.ssgdl import SSGDL
