"""The model's page in the Airflow UI (mounted by ``plugins/dog_breed_ui.py``).

``view_model`` turns Describe*/List* answers and Airflow's run records into what the page
shows (pure, typed, tested without Airflow); ``aws_reads`` and ``airflow_reads`` fetch those
inputs; ``charts`` draws them with plotly; ``app`` serves the page, its JSON API, the
thumbnails and the offline resource descriptions.
"""
