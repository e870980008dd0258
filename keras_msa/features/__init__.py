"""Raw media -> features: decoding clips (`media`), generated test media
(`testing_media`) and dataset extraction (`extract`).

Importing this package does not import PyAV or OpenCV (the `[media]`
extra); they are imported when a clip is decoded.
"""

from keras_msa.features.media import FACE_SIZE
from keras_msa.features.media import Clip
from keras_msa.features.media import MediaError
from keras_msa.features.media import load_clip
