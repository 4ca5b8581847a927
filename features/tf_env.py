"""TensorFlow settings that must be in place before TensorFlow is first imported.

oneDNN's fused CPU kernels crash this stack (TF 2.21, Keras 3.12) with a segmentation fault on
a small ResNet's first training step on the 2-core CI machines; the plain kernels do not. Import
this module (or automl._tf_env, which imports it) before anything imports TensorFlow or Keras; a
user's own setting wins.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info and warnings: noise in a search's output
