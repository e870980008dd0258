"""keras_msa models: `keras_msa.models.<Name>(...)`, one folder per model."""

from keras_msa.models.base import MSAModel
from keras_msa.models.base import available_models
from keras_msa.models.base import get_model_class
from keras_msa.models.base import register_model
from keras_msa.models.crosssent import CrossSent
from keras_msa.models.eflstm import EFLSTM
from keras_msa.models.lfdnn import LFDNN
from keras_msa.models.m3sa import M3SA
from keras_msa.models.mulg import MulG
from keras_msa.models.mult import MulT
from keras_msa.models.tecafn import TeCaFN
from keras_msa.models.ssgdl import SSGDL
from keras_msa.models.tfn import TFN
from keras_msa.models.lmf import LMF
from keras_msa.models.selfmm import SelfMM
from keras_msa.models.magbert import MAGBERT
from keras_msa.models.mmim import MMIM
from keras_msa.models.misa import MISA
