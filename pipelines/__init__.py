"""Kubeflow Pipelines for the platform, compiled offline with the kfp SDK in `.venv-pipelines`.

Importing this package must not need kfp: `inference_service` is tested from the main virtualenv.
"""
