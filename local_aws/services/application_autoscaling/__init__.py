"""Application Auto Scaling for SageMaker variants: moto keeps the records, this acts on them."""
