"""Environment MLflow reads at import: set (unless the user set them) before anything imports mlflow.

No usage telemetry leaves the machine, no git or uv probing of the working directory, and no
URL banners on stdout, which belongs to our command's own output.
"""
import os

_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_UV_AUTO_DETECT": "false",
    "MLFLOW_PRINT_MODEL_URLS_ON_CREATION": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # no INFO lines about table creation or input examples
    # MLflow's own handler writes to the terminal; automl.library_log routes its logger to the log file.
    "MLFLOW_CONFIGURE_LOGGING": "false",
}

for _key, _value in _DEFAULTS.items():
    os.environ.setdefault(_key, _value)
