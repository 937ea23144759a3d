"""SageMaker Model Registry: model package groups and their versioned model packages."""
