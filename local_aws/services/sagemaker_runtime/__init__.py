"""Amazon SageMaker Runtime: InvokeEndpoint, answered by the hosting service's model servers."""
