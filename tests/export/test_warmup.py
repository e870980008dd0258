"""Issue 18: exports can carry a TensorFlow Serving warm-up file, decoded here
with protos built from the public TensorFlow Serving field numbers (an
implementation independent of the hand encoder in keras_msa.export.warmup)."""

import os

import numpy as np
import tensorflow as tf
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from tensorflow.core.framework import tensor_pb2

from keras_msa.export import export_saved_model
from keras_msa.export import load_serving_fn
from keras_msa.export import serve_numpy
from keras_msa.export.warmup import encode_prediction_log
from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic

_T = descriptor_pb2.FieldDescriptorProto


def _prediction_log_class():
    """`tensorflow.serving.PredictionLog` as in tensorflow_serving/apis/
    (prediction_log.proto, predict.proto, model.proto), the fields the
    warm-up file uses, in a private pool."""
    pool = descriptor_pool.DescriptorPool()

    def add(fd):
        for dep in fd.dependencies:
            add(dep)
        try:
            pool.FindFileByName(fd.name)
        except KeyError:
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb))

    add(tensor_pb2.DESCRIPTOR)
    f = descriptor_pb2.FileDescriptorProto(
        name="warmup_test.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["tensorflow/core/framework/tensor.proto"])

    def message(name, fields, nested=()):
        m = f.message_type.add(name=name)
        for n, number, kind, type_name, label in fields:
            m.field.add(name=n, number=number, type=kind, type_name=type_name, label=label)
        for entry in nested:
            m.nested_type.add().CopyFrom(entry)
        return m

    opt, rep = _T.LABEL_OPTIONAL, _T.LABEL_REPEATED
    message("ModelSpec", [("signature_name", 3, _T.TYPE_STRING, None, opt)])
    entry = descriptor_pb2.DescriptorProto(name="InputsEntry")
    entry.field.add(name="key", number=1, type=_T.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=_T.TYPE_MESSAGE, type_name=".tensorflow.TensorProto", label=opt)
    entry.options.map_entry = True
    message("PredictRequest", [
        ("model_spec", 1, _T.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec", opt),
        ("inputs", 2, _T.TYPE_MESSAGE, ".tensorflow.serving.PredictRequest.InputsEntry", rep),
    ], nested=[entry])
    message("PredictLog", [("request", 1, _T.TYPE_MESSAGE, ".tensorflow.serving.PredictRequest", opt)])
    message("PredictionLog", [("predict_log", 6, _T.TYPE_MESSAGE, ".tensorflow.serving.PredictLog", opt)])
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.PredictionLog"))


def _decode(record):
    log = _prediction_log_class().FromString(record)
    request = log.predict_log.request
    tensors = {k: tf.make_ndarray(tensor_pb2.TensorProto.FromString(v.SerializeToString()))
               for k, v in request.inputs.items()}
    return request.model_spec.signature_name, tensors


def test_export_writes_warmup_request_of_the_probe_batch(tmp_path):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["test"], 3)
    model = LFDNN()
    model(batch)
    export_dir = export_saved_model(model, str(tmp_path / "m" / "1"), batch, warmup=True)
    path = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    assert len(records) == 1
    signature_name, tensors = _decode(records[0])
    assert signature_name == "serving_default"
    fn = load_serving_fn(export_dir)
    assert set(tensors) == set(fn.structured_input_signature[1]) == set(batch)
    for k, v in batch.items():
        assert tensors[k].dtype == np.asarray(v).dtype
        np.testing.assert_array_equal(tensors[k], np.asarray(v))
    # The request is one the signature serves.
    np.testing.assert_allclose(serve_numpy(fn, tensors)["sentiment"],
                               np.asarray(model(batch)["sentiment"]), atol=1e-5)
    # Without the option there is no warm-up file.
    plain = export_saved_model(model, str(tmp_path / "p" / "1"), batch)
    assert not os.path.exists(os.path.join(plain, "assets.extra"))


def test_string_and_long_inputs_round_trip():
    # 200 bytes of text push the lengths past one varint byte.
    inputs = {"text_raw": np.array([b"a great film", ("x" * 200).encode()], dtype=object),
              "audio_mask": np.array([[True, False]] * 2)}
    signature_name, tensors = _decode(encode_prediction_log(inputs, "other"))
    assert signature_name == "other"
    assert list(tensors["text_raw"]) == list(inputs["text_raw"])
    np.testing.assert_array_equal(tensors["audio_mask"], inputs["audio_mask"])


def test_export_recipe_warmup_flag(tmp_path, load_recipe):
    import keras
    from absl import flags

    module = load_recipe("export")
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    model.save(str(tmp_path / "model.keras"))
    export_dir = tmp_path / "sm" / "1"
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["export.py", f"--model_path={tmp_path / 'model.keras'}", f"--export_dir={export_dir}", "--warmup"])
    module.main([])
    records = list(tf.data.TFRecordDataset(str(export_dir / "assets.extra" / "tf_serving_warmup_requests")))
    signature_name, tensors = _decode(records[0].numpy())
    assert len(records) == 1 and signature_name == "serving_default"
    assert set(tensors) == set(load_serving_fn(str(export_dir)).structured_input_signature[1])
