"""The models-from-code script MLflow stores with every logged clinfuse model.

MLflow runs this file when the model is loaded, instead of unpickling a Python
object: nothing executable travels inside the model's artifacts, only this
short script, and the class comes from the installed clinfuse package
(``flows.tracking.pyfunc_model``). Not imported by clinfuse itself.
"""

from mlflow.models import set_model

from flows.tracking.pyfunc_model import ClinfusePyfunc

set_model(ClinfusePyfunc())
