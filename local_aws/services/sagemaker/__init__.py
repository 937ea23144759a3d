"""Amazon SageMaker's control plane: training, tuning, hosting, tags (all on :data:`.api.SAGEMAKER`)."""
