from keras_msa.models.misa.misa import MISA
