"""The pyfunc model MLflow loads ("models from code"): no pickled Python object in the model."""
from mlflow.models import set_model

from automl.pyfunc import ECGPyfunc

set_model(ECGPyfunc())
