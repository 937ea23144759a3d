"""Airflow plugin: the dog-breed model's page in the Airflow UI.

The api-server mounts the page's FastAPI app (``dog_breed.ui.app``) at ``/dog-breed``; the
external view puts it in the UI's navigation as "Dog-breed model", shown inside the UI at
``/plugin/dog-breed-model``. The operators' extra links live on the operators themselves
(``dog_breed.links``), as the provider's do.

Airflow's plugin loader imports every ``.py`` under ``plugins/`` as a top-level module; this
file is the only plugin there (``.airflowignore`` keeps the loader out of the ``dog_breed``
library, which the DAG imports as a package). Importing it stays light: no boto3 client,
torch or sagemaker SDK until a request needs them.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dog_breed.links import UI_URL_PREFIX
from dog_breed.ui.app import app

PAGE_NAME = "Dog-breed model"
PAGE_ROUTE = "dog-breed-model"


class DogBreedModelPlugin(AirflowPlugin):
    name = "dog_breed_model"
    fastapi_apps = [{"app": app, "url_prefix": UI_URL_PREFIX, "name": "Dog-breed model page"}]
    external_views = [
        {
            "name": PAGE_NAME,
            "href": f"{UI_URL_PREFIX}/",
            "url_route": PAGE_ROUTE,
            "destination": "nav",
        }
    ]
