"""Metrics exactly as the papers compute them (docs/metrics.md)."""

from keras_msa.metrics.avec import avec_metrics
from keras_msa.metrics.avec import ccc
from keras_msa.metrics.classification import IEMOCAP_EMOTIONS
from keras_msa.metrics.classification import accuracy
from keras_msa.metrics.classification import binary_decisions
from keras_msa.metrics.classification import humor_metrics
from keras_msa.metrics.classification import iemocap_metrics
from keras_msa.metrics.classification import weighted_f1
from keras_msa.metrics.common import mae
from keras_msa.metrics.common import pearson_corr
from keras_msa.metrics.common import rmse
from keras_msa.metrics.ordinal import ordinal_levels
from keras_msa.metrics.ordinal import ordinal_metrics
from keras_msa.metrics.ordinal import quadratic_weighted_kappa
from keras_msa.metrics.regression import SCALES
from keras_msa.metrics.regression import regression_metrics
from keras_msa.metrics.regression import sims_bins

# UR-FUNNY is a plain binary accuracy; the name says which task it serves.
urfunny_metrics = humor_metrics
