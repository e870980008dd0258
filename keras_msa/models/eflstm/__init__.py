from keras_msa.models.eflstm.eflstm import EFLSTM
