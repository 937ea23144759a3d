"""SageMaker hyperparameter tuning: optuna searches, the training service trains the trials."""
