"""clinfuse ingestion: readers, de-identification, validation and the manifest.

Plain Python: never imports prefect, mlflow or streamlit.
"""

__version__ = "0.2.0"  # 0.2.0: CT volumes keep their body (fitted, not centre-cropped); enters pipeline_version
