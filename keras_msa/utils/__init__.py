"""Small backend-neutral helpers shared by layers and models."""

from keras_msa.utils.masks import attention_mask
from keras_msa.utils.masks import last_valid_step
from keras_msa.utils.masks import masked_mean
from keras_msa.utils.masks import masked_rnn
from keras_msa.utils.masks import masked_softmax
from keras_msa.utils.masks import sequence_mask
from keras_msa.utils.masks import zero_masked
