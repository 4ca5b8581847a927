"""The light runtime an export carries (:mod:`automl.export` copies these files into the export).

``light_runtime.py`` and ``__main__.py`` run with numpy, scipy, Pillow and onnxruntime alone,
beside the SmartECG code they need, which the export copies into its ``vendor`` folder.
"""
