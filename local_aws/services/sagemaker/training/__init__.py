"""SageMaker training jobs: the toolkit contract, the job runner, Debugger rule statuses."""
