"""The pyfunc flavour as MLflow "models from code": MLflow copies this file into every logged
model and runs it at load time, instead of unpickling a Python object (cloudpickle ties a model to
the Python that logged it and runs whatever the pickle holds; this file can be read in the
artifacts). Loading needs the vl-jepa package installed, as the model's requirements say."""

import mlflow.models

from pipelines.train.tracking import VLJepaPyfunc

mlflow.models.set_model(VLJepaPyfunc())
