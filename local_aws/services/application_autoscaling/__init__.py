"""Application Auto Scaling for SageMaker variants: moto keeps the records; :mod:`.policies` adds
target tracking's alarms to its operations and :mod:`.controller` acts on them."""
