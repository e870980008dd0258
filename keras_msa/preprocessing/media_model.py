"""A keras_msa model with its preprocessor inside: raw media in, sentiment out."""

import keras

from keras_msa.models.base import MSAModel


@keras.saving.register_keras_serializable(package="keras_msa")
class MediaModel(MSAModel):
    """`preprocessor` + any keras_msa `model` as one Keras model.

    As keras-hub's `Task` owns a `preprocessor`, this model owns a
    `MultimodalPreprocessor`; but the preprocessor runs inside `call`, so
    `fit`, `predict`, the `.keras` file and the exported SavedModel all take
    the raw inputs (`text` strings, `waveform` + `waveform_length`, `faces` +
    `face_count`, see `MultimodalPreprocessor`) and the face CNN can be
    fine-tuned with the rest.

    The objective is the inner model's own `compute_loss` (task loss plus its
    paper's auxiliary losses) on its outputs and the targets; the epoch that
    drives its schedules is forwarded by `set_epoch`. keras_msa objectives
    read outputs and targets only, so they get the raw inputs as `x`.

    Args:
        preprocessor: a `MultimodalPreprocessor` (or its serialized config).
        model: a keras_msa `MSAModel` whose inputs are the preprocessor's
            output (text features of the encoder's width, audio and vision
            of the converters' widths), or its serialized config.
        **kwargs: `MSAModel` arguments (`name`, ...).

    Example:

        model = MediaModel(MultimodalPreprocessor(text_encoder=..., audio_converter=AudioConverter(),
                                                  face_converter=FaceConverter()),
                           LFDNN())
        model.compile(optimizer="adam")
        model.fit(raw_dataset, epochs=2)      # ({"text", "waveform", ...}, {"sentiment"})
        model.predict(raw_batch([clip], ["what a film"]))["sentiment"]
    """

    # Raw text and media decoding run inside `call`; XLA compiles neither.
    predict_xla_by_default = False

    def __init__(self, preprocessor, model, **kwargs):
        super().__init__(**kwargs)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        if not isinstance(model, MSAModel):
            raise TypeError(f"MediaModel: model must be a keras_msa MSAModel; got {type(model).__name__}.")
        if isinstance(model, MediaModel):
            raise TypeError("MediaModel: the inner model already has a preprocessor.")
        self.preprocessor = preprocessor
        self.model = model
        self.task_loss = model.task_loss

    def build(self, input_shape=None):
        # The inner model is built from the preprocessor's output shapes, so
        # that a reloaded `.keras` file finds every weight in place.
        self.preprocessor.build(input_shape)
        if not self.model.built:
            # As Keras rebuilds a loaded model: its own build, or a symbolic
            # run for models that create their weights in the first call.
            self.model.build_from_config({"input_shape": self.preprocessor.output_shapes()})
        self.built = True

    @property
    def _default_save_signature(self):
        # Keras' automatic signature declares every input float32, which
        # cannot trace strings; `keras_msa.export` writes its own.
        return None

    def call(self, inputs, training=False):
        batch = self.preprocessor(inputs, training=training)
        return self.model(batch, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = self.model.compute_loss(x, y, y_pred, sample_weight=sample_weight, training=training)
        self.loss_components = self.model.loss_components
        return total

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.model.set_epoch(epoch)

    def training_callbacks(self, validation_data=None):
        return self.model.training_callbacks(validation_data)

    def get_config(self):
        config = super().get_config()
        config.pop("task_loss", None)
        config.update(
            {
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
                "model": keras.saving.serialize_keras_object(self.model),
            }
        )
        return config
