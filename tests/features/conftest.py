"""Generated raw media shared by the feature tests (made once per session)."""

import pytest


@pytest.fixture(scope="session")
def raw_media(tmp_path_factory):
    """label.csv path of 2 good clips + the 3 broken ones."""
    from keras_msa.features.testing_media import make_test_media
    from keras_msa.features.testing_media import missing_requirements

    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    return make_test_media(str(tmp_path_factory.mktemp("raw_media")), n_clips=2, seed=0)
