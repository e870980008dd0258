from keras_msa.models.lfdnn.lfdnn import LFDNN
