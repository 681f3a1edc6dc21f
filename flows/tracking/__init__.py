"""MLflow: tracking runs, the registered pyfunc model and the champion gate."""
