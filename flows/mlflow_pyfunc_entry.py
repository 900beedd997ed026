"""The model-from-code entry MLflow copies into each logged model and runs on load (no pickle):
it names the class that loads and serves it (``flows/mlflow_model.py``)."""

from lmforge.flows.mlflow_model import LmforgeTextModel
from mlflow.models import set_model

set_model(LmforgeTextModel())
