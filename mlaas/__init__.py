"""mlaas: retrain, serve, evaluate and watch registered MLflow models as a service."""

__version__ = "0.1.0"
