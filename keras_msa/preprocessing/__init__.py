"""Raw media -> model inputs, as layers that live inside a model and its SavedModel.

keras-hub's split: a tokenizer (`Tokenizer`, or a frozen text encoder), an
audio converter (`AudioConverter`), an image converter for faces
(`FaceConverter`) and a `MultimodalPreprocessor` that owns them; `MediaModel`
puts a preprocessor in front of any keras_msa model. Decoding files into
waveforms and face crops is `keras_msa.features.media.load_clip`.
"""

from keras_msa.preprocessing.audio_converter import AudioConverter
from keras_msa.preprocessing.face_converter import EMOTIONS
from keras_msa.preprocessing.face_converter import FaceConverter
from keras_msa.preprocessing.media_model import MediaModel
from keras_msa.preprocessing.multimodal_preprocessor import RAW_INPUTS
from keras_msa.preprocessing.multimodal_preprocessor import MultimodalPreprocessor
from keras_msa.preprocessing.raw_batch import raw_batch
from keras_msa.preprocessing.tokenizer import Tokenizer
