"""Dog-breed SageMaker pipeline: Params, request builders, naming, policies, hooks, triggers, operators.

Everything here imports without Airflow running and without heavy dependencies (no torch,
no sagemaker SDK at import time). The pure modules make no AWS call; ``hooks``, ``triggers``,
``tasks`` and ``operators`` make them, through the Amazon provider.
"""
