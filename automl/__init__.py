"""SmartECG: AutoML experiment orchestration for 12-lead ECG page images."""

__version__ = "0.1.0"
