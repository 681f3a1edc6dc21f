"""clinfuse models: encoders, embedding store, fusion, cross-profiling imputation, training, evaluation.

Plain Python: never imports prefect, mlflow or streamlit.
"""

import warnings

# A modality no patient of the home has (e.g. ECG on a site that records none) enters the feature set
# as a block of width 0, and the fusion and imputation networks give it a zero-input linear layer.
# torch warns once per such layer that initialising it does nothing, which is what is meant here:
# silenced for that message only, so a demo or training log does not fill with it.
warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op", category=UserWarning)
