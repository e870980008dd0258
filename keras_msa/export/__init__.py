"""Export to SavedModels that TensorFlow Serving loads."""

from keras_msa.export.saved_model import export_saved_model
from keras_msa.export.saved_model import load_serving_fn
from keras_msa.export.saved_model import serve_numpy
from keras_msa.export.saved_model import serving_signature
from keras_msa.export.text_saved_model import export_text_saved_model
from keras_msa.export.text_saved_model import load_text_serving_fn
from keras_msa.export.text_saved_model import serve_text_numpy
