from keras_msa.models.tfn.tfn import TFN
