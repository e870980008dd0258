"""A SavedModel export gets the permissions the umask asks for (a serving
process running as another user must be able to read it), not mkdtemp's 0700."""

import os

from keras_msa.export import export_saved_model
from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


def test_export_directory_follows_the_umask(tmp_path):
    mask, dir_mode = 0o022, 0o755
    batch = small_batch(tiny_synthetic(train=4, valid=4, test=4)["train"], 2)
    model = LFDNN(hidden_dims={"text": 4, "audio": 2, "vision": 2}, fusion_dim=4)
    model(batch)
    old = os.umask(mask)
    try:
        export_dir = export_saved_model(model, str(tmp_path / "lfdnn" / "1"), batch)
    finally:
        os.umask(old)
    assert os.stat(export_dir).st_mode & 0o777 == dir_mode
    for root, dirs, files in os.walk(export_dir):
        for name in files:  # TensorFlow's own files follow the umask already
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o666 & ~mask, name
