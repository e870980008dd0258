from keras_msa.models.tecafn.tecafn import TeCaFN
