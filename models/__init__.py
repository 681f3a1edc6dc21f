"""clinfuse models: encoders, embedding store, fusion, cross-profiling imputation, training, evaluation.

Plain Python: never imports prefect, mlflow or streamlit.
"""
