"""Custom operators: what the Amazon provider does not offer."""
