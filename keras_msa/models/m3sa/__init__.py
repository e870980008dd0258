from keras_msa.models.m3sa.key_modality_selector import KeyModalitySelector
from keras_msa.models.m3sa.m3sa import M3SA
