"""Waveform -> frame-level acoustic features, with tensor ops only."""

import keras
from keras import ops

_FEATURES = ("log_mel", "mfcc")


@keras.saving.register_keras_serializable(package="keras_msa")
class AudioConverter(keras.layers.Layer):
    """Turns padded 16 kHz waveforms into log-mel or MFCC frames (+ deltas).

    Everything runs as TensorFlow ops (`tf.signal`), so the layer lives inside
    a model and its SavedModel: a serving client sends samples, not features.
    Resampling to `sample_rate` happens before, in the extractor
    (`keras_msa.features.media.load_clip`).

    For a row with `L` real samples (the rest of the row is padding, whatever
    it holds), the samples past `L` are set to 0 and the row is cut into
    frames of `frame_length` samples every `frame_step` samples, zero-padded
    at the end (25 ms / 10 ms at 16 kHz: 100 frames a second):

        T(L) = ceil(L / frame_step)                      real frames
        X_t(k) = sum_n w(n) x(t * frame_step + n) e^{-2 pi i k n / N_fft}
        P_t(k) = |X_t(k)|^2                             (periodic Hann w)
        M_t(m) = log(sum_k H(m, k) P_t(k) + log_offset)  log-mel, HTK mel scale
        C_t(j) = sqrt(2 / M) sum_m M_t(m) cos(pi j (m + 1/2) / M)
                                                         MFCC (tf.signal's DCT-II)

    Deltas (regression over +-`delta_width` frames, HTK):

        d_t = sum_{n=1}^{W} n (c_{t+n} - c_{t-n}) / (2 sum_{n=1}^{W} n^2)

    where a frame index outside the row's real frames `[0, T(L) - 1]` is
    clamped to the nearest real one, so the deltas of the last real frames do
    not read padding. The output is `[c, d, dd]` concatenated on the feature
    axis (`order + 1` blocks).

    Masking: `mask[b, t] = t < T(L_b)`. Features of padded frames are exactly
    0 (selected with `where`). A row with `L = 0` (no audio track) has an
    all-False mask: the missing modality of docs/data.md. Whatever the batch's
    padding, a row gives the same real frames as the row alone.

    Args:
        features: "mfcc" (default) or "log_mel".
        sample_rate: samples per second of the input (16000).
        frame_length: window in samples (400 = 25 ms).
        frame_step: hop in samples (160 = 10 ms).
        fft_length: FFT size (512).
        num_mel_bins: mel bands (40).
        num_mfcc: cepstral coefficients kept for "mfcc" (13).
        lower_edge_hertz, upper_edge_hertz: mel filterbank range (20, 7600).
        delta_order: 0 (none), 1 (deltas) or 2 (deltas and delta-deltas).
        delta_width: W of the regression (2: five frames).
        log_offset: added to the mel energies before the log (1e-6).
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> conv = AudioConverter()
    >>> out = conv(np.zeros((2, 16000), "float32"), np.array([16000, 8000]))
    >>> tuple(out["features"].shape), out["mask"].numpy().sum(axis=1).tolist()
    ((2, 100, 39), [100, 50])
    """

    def __init__(
        self,
        features="mfcc",
        sample_rate=16000,
        frame_length=400,
        frame_step=160,
        fft_length=512,
        num_mel_bins=40,
        num_mfcc=13,
        lower_edge_hertz=20.0,
        upper_edge_hertz=7600.0,
        delta_order=2,
        delta_width=2,
        log_offset=1e-6,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if features not in _FEATURES:
            raise ValueError(f"AudioConverter: features must be one of {_FEATURES}; got {features!r}.")
        if delta_order not in (0, 1, 2):
            raise ValueError(f"AudioConverter: delta_order must be 0, 1 or 2; got {delta_order!r}.")
        if not 0 < frame_step <= frame_length <= fft_length:
            raise ValueError(
                "AudioConverter: need 0 < frame_step <= frame_length <= fft_length; got "
                f"frame_step={frame_step}, frame_length={frame_length}, fft_length={fft_length}."
            )
        if not 0 <= lower_edge_hertz < upper_edge_hertz <= sample_rate / 2:
            raise ValueError(
                f"AudioConverter: need 0 <= lower_edge_hertz < upper_edge_hertz <= sample_rate / 2 = "
                f"{sample_rate / 2}; got {lower_edge_hertz}, {upper_edge_hertz}."
            )
        if features == "mfcc" and not 0 < num_mfcc <= num_mel_bins:
            raise ValueError(
                f"AudioConverter: num_mfcc must be in 1..num_mel_bins={num_mel_bins}; got {num_mfcc}."
            )
        self.features = features
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.fft_length = int(fft_length)
        self.num_mel_bins = int(num_mel_bins)
        self.num_mfcc = int(num_mfcc)
        self.lower_edge_hertz = float(lower_edge_hertz)
        self.upper_edge_hertz = float(upper_edge_hertz)
        self.delta_order = int(delta_order)
        self.delta_width = int(delta_width)
        self.log_offset = float(log_offset)

    @property
    def feature_dim(self):
        base = self.num_mfcc if self.features == "mfcc" else self.num_mel_bins
        return base * (self.delta_order + 1)

    @property
    def frames_per_second(self):
        return self.sample_rate / self.frame_step

    def num_frames(self, lengths):
        """Real frames of rows with `lengths` samples: `ceil(L / frame_step)`."""
        lengths = ops.cast(lengths, "int32")
        return (lengths + self.frame_step - 1) // self.frame_step

    def _deltas(self, x, frames):
        import tensorflow as tf

        shape = tf.shape(x)
        t = tf.broadcast_to(tf.range(shape[1])[None, :], shape[:2])
        last = tf.maximum(frames - 1, 0)[:, None]
        denominator = 2.0 * sum(n * n for n in range(1, self.delta_width + 1))
        out = tf.zeros_like(x)
        for n in range(1, self.delta_width + 1):
            ahead = tf.gather(x, tf.clip_by_value(t + n, 0, last), batch_dims=1)
            behind = tf.gather(x, tf.clip_by_value(t - n, 0, last), batch_dims=1)
            out += float(n) * (ahead - behind)
        return out / denominator

    def call(self, waveform, lengths=None):
        import tensorflow as tf

        waveform = tf.cast(tf.convert_to_tensor(waveform), tf.float32)
        if waveform.shape.rank != 2:
            raise ValueError(
                f"AudioConverter expects waveforms [batch, samples]; got shape {waveform.shape}."
            )
        samples = tf.shape(waveform)[1]
        if lengths is None:
            lengths = tf.fill(tf.shape(waveform)[:1], samples)
        lengths = tf.clip_by_value(tf.cast(tf.reshape(lengths, [-1]), tf.int32), 0, samples)
        real = tf.range(samples)[None, :] < lengths[:, None]
        waveform = tf.where(real, waveform, tf.zeros_like(waveform))
        # At least one frame, so a batch of empty waveforms still has a time axis.
        waveform = tf.pad(waveform, [[0, 0], [0, tf.maximum(self.frame_length - samples, 0)]])
        stft = tf.signal.stft(
            waveform,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            window_fn=tf.signal.hann_window,
            pad_end=True,
        )
        power = tf.math.square(tf.abs(stft))
        mel_matrix = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=self.num_mel_bins,
            num_spectrogram_bins=self.fft_length // 2 + 1,
            sample_rate=self.sample_rate,
            lower_edge_hertz=self.lower_edge_hertz,
            upper_edge_hertz=self.upper_edge_hertz,
        )
        x = tf.math.log(tf.tensordot(power, mel_matrix, 1) + self.log_offset)
        if self.features == "mfcc":
            x = tf.signal.mfccs_from_log_mel_spectrograms(x)[..., : self.num_mfcc]
        frames = tf.minimum(self.num_frames(lengths), tf.shape(x)[1])
        blocks = [x]
        for _ in range(self.delta_order):
            blocks.append(self._deltas(blocks[-1], frames))
        x = tf.concat(blocks, axis=-1) if len(blocks) > 1 else x
        mask = tf.range(tf.shape(x)[1])[None, :] < frames[:, None]
        x = tf.where(mask[..., None], x, tf.zeros_like(x))
        return {"features": x, "mask": mask}

    def compute_output_spec(self, waveform, lengths=None):
        batch = waveform.shape[0]
        return {
            "features": keras.KerasTensor((batch, None, self.feature_dim), dtype="float32"),
            "mask": keras.KerasTensor((batch, None), dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "features": self.features,
                "sample_rate": self.sample_rate,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "fft_length": self.fft_length,
                "num_mel_bins": self.num_mel_bins,
                "num_mfcc": self.num_mfcc,
                "lower_edge_hertz": self.lower_edge_hertz,
                "upper_edge_hertz": self.upper_edge_hertz,
                "delta_order": self.delta_order,
                "delta_width": self.delta_width,
                "log_offset": self.log_offset,
            }
        )
        return config
