"""clinfuse ingestion: readers, de-identification, validation and the manifest.

Plain Python: never imports prefect, mlflow or streamlit.
"""

__version__ = "0.1.0"
