"""SageMaker hosting: models, endpoint configs, endpoints, and the model servers behind them."""
