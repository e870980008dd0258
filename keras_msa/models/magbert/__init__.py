from keras_msa.models.magbert.magbert import MAGBERT
