"""Dog-breed SageMaker pipeline: request builders, naming, policies and operators.

Everything here is importable without Airflow running and without heavy
dependencies (no torch, no sagemaker SDK at import time).
"""
