"""TensorFlow Serving warm-up requests (`assets.extra/tf_serving_warmup_requests`).

TensorFlow Serving replays the requests of this file when it loads a model
version, before it serves traffic, so the first real request does not pay
for graph optimisation and memory allocation. The file is a TFRecord whose
records are serialised `tensorflow.serving.PredictionLog` protos.

The protos are encoded here by hand, following the public `.proto` files of
TensorFlow Serving (github.com/tensorflow/serving, tensorflow_serving/apis/),
because `tensorflow-serving-api` would add a dependency (and `grpcio`) that
only this file needs. The field numbers used:

- `prediction_log.proto`: `PredictionLog.predict_log = 6`,
  `PredictLog.request = 1`;
- `predict.proto`: `PredictRequest.model_spec = 1`,
  `PredictRequest.inputs = 2` (`map<string, TensorProto>`, on the wire a
  repeated entry message with `key = 1`, `value = 2`);
- `model.proto`: `ModelSpec.signature_name = 3`.

The `TensorProto`s themselves come from TensorFlow (`tf.make_tensor_proto`).
"""

import os

import numpy as np
import tensorflow as tf

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2): tag, length, bytes."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_prediction_log(inputs, signature_name="serving_default"):
    """The bytes of a `PredictionLog` holding one `PredictRequest` for
    `signature_name` with the tensors `inputs` (`{name: array}`)."""
    model_spec = _field(3, signature_name.encode())
    request = _field(1, model_spec)
    for name in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[name]).SerializeToString()
        request += _field(2, _field(1, name.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


def request_inputs(example_batch, signature):
    """The probe batch as arrays of the signature's dtypes (strings as bytes)."""
    inputs = {}
    for name, spec in signature.items():
        value = example_batch[name]
        array = value.numpy() if tf.is_tensor(value) else np.asarray(value)
        if spec.dtype == tf.string:
            array = np.array([v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)],
                             dtype=object).reshape(array.shape)
        else:
            array = array.astype(spec.dtype.as_numpy_dtype, copy=False)
        inputs[name] = array
    return inputs


def write_warmup_file(export_dir, example_batch, signature, signature_name="serving_default"):
    """Writes `export_dir/assets.extra/tf_serving_warmup_requests` with one
    request: the probe batch. Returns the file's path."""
    directory = os.path.join(export_dir, WARMUP_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(encode_prediction_log(request_inputs(example_batch, signature), signature_name))
    return path
