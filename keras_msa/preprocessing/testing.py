"""Tiny raw-media models for tests and examples (random weights, seconds to build).

`tiny_bert_preset(directory)` writes a keras-hub BERT preset (1 layer, 8
wide, a 40-word vocabulary) that every preset loader reads like a real one;
`tiny_media_model(preset)` puts a `MultimodalPreprocessor` (that text
encoder, the `AudioConverter`, fer's pretrained `FaceConverter`) in front of
a small LFDNN.
"""

WORDS = ("i", "really", "loved", "this", "movie", "it", "was", "boring", "and", "far", "too", "long", "okay",
         "a", "good", "bad", "film", "great", "what", "the", "not", "so", "very", "happy", "sad", "liked",
         "hated", "fun", "story", "acting")
VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") + WORDS


def tiny_bert_preset(directory, sequence_length=16, seed=0):
    """Writes a randomly initialised tiny BERT preset to `directory`; returns it."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=list(VOCAB), lowercase=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=sequence_length)
    backbone.save_to_preset(str(directory))
    tokenizer.save_to_preset(str(directory))
    return str(directory)


def tiny_media_model(text_preset, sequence_length=8, seed=0):
    """A built `MediaModel`: tiny text encoder + AudioConverter + FaceConverter + LFDNN."""
    import keras

    from keras_msa.layers.text_backbone import TextBackbone
    from keras_msa.models.lfdnn import LFDNN
    from keras_msa.preprocessing.audio_converter import AudioConverter
    from keras_msa.preprocessing.face_converter import FaceConverter
    from keras_msa.preprocessing.media_model import MediaModel
    from keras_msa.preprocessing.multimodal_preprocessor import MultimodalPreprocessor

    keras.utils.set_random_seed(seed)
    preprocessor = MultimodalPreprocessor(
        text_encoder=TextBackbone.from_preset(text_preset, sequence_length=sequence_length, fine_tune=False),
        audio_converter=AudioConverter(),
        face_converter=FaceConverter(),
    )
    model = MediaModel(preprocessor, LFDNN(hidden_dims={"text": 8, "audio": 8, "vision": 8}, fusion_dim=8))
    model(preprocessor.probe_inputs(batch_size=2))
    return model
