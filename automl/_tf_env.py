"""TensorFlow's settings before it loads: imported first by every module that imports TensorFlow or
Keras. They live in :mod:`features.tf_env`, which the feature code that loads a pretrained
backbone imports too."""
import features.tf_env  # noqa: F401
