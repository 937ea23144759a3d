"""The model page's FastAPI app, mounted by the api-server at ``/dog-breed`` (dog_breed_ui.py).

Routes (all but ``/static`` need a user who may read the DAG's runs, task instances and XComs,
checked by Airflow's auth manager from the UI's session cookie or a Bearer token):

* ``/``                                 the page (HTML; plotly charts, Jinja2 tables)
* ``/api/model-page``                   the same view model as JSON
* ``/smoke-test/thumbnail.jpg``         a smoke-test image of a run, as a small JPEG
* ``/profiler-report``                  the live model's ProfilerReport HTML from S3
* ``/aws/<service>/<kind>/<name>``      a resource's Describe* answer (the operators' links offline)
* ``/static/...``                       plotly.js from plotly's package, the page's JS and CSS

Everything heavy (boto3, plotly, Pillow, Airflow's ORM and auth) is imported per request.
"""

from __future__ import annotations

import io
import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from dog_breed.links import UI_URL_PREFIX
from dog_breed.params import PARAM_SPECS
from dog_breed.ui.page import DAG_ID

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
DEFAULT_ENDPOINT = str(PARAM_SPECS["endpoint_name"]["default"])
ENDPOINT_NAME = PARAM_SPECS["endpoint_name"]["pattern"]
TRAINING_JOB_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
MAX_RUNS = 100
THUMBNAIL_PX = 160
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_REPORT_BYTES = 50 * 1024 * 1024
# The report is SageMaker's HTML (with scripts for its plots) from a bucket the training job can
# write: it runs sandboxed, in an origin of its own, so it cannot act as the logged-in user.
REPORT_HEADERS = {
    "Content-Security-Policy": "sandbox allow-scripts allow-popups",
    "X-Content-Type-Options": "nosniff",
}

app = FastAPI(
    title="Dog-breed model page",
    description="The dog_breed_pipeline's live model, runs, training curves and smoke test.",
    docs_url=None,
    redoc_url=None,
)


class LoginRequired(Exception):
    """An HTML request without a valid session: send the browser to the login page."""


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, _: LoginRequired) -> Response:
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


async def authorized_reader(request: Request) -> None:
    """Airflow's own check: the user (cookie or Bearer token) may read this DAG's runs,
    task instances and XComs; 401/403 otherwise (a browser asking for a page is sent to log in)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    try:
        user = await get_user(request, None, await bearer_scheme(request))
    except HTTPException as error:
        if error.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            raise LoginRequired from error
        raise
    manager = get_auth_manager()
    for entity in (DagAccessEntity.RUN, DagAccessEntity.TASK_INSTANCE, DagAccessEntity.XCOM):
        if not manager.is_authorized_dag(
            method="GET", access_entity=entity, details=DagDetails(id=DAG_ID), user=user
        ):
            raise HTTPException(403, f"Forbidden: reading {DAG_ID}'s {entity.value.lower()} is not allowed")


Reader = Annotated[None, Depends(authorized_reader)]


@cache
def templates():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["when"] = lambda iso: iso.replace("T", " ")[:16] + " UTC" if iso else "-"
    environment.filters["pct"] = lambda value: "-" if value is None else f"{100 * value:.1f}%"
    return environment


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    from dog_breed.links import ui_base_path

    html = templates().get_template(template).render(base=ui_base_path() + UI_URL_PREFIX, **context)
    return HTMLResponse(html, status_code=status_code)


def aws_reader():
    from dog_breed.ui.aws_reads import AwsReader

    return AwsReader()


def aws_failure(error: Exception, what: str) -> HTTPException:
    """An AWS failure as the caller should see it: access denied stays 403, the rest is a 502."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "?")
        message = error.response.get("Error", {}).get("Message", "")
        status = 403 if "AccessDenied" in code else 502
        return HTTPException(status, f"AWS answered {code} reading {what}: {message}")
    return HTTPException(502, f"could not read {what} from AWS: {type(error).__name__}: {error}")


def _page(reader, endpoint: str | None, runs: int, training_job: str | None):
    from dog_breed.ui.page import build_model_page

    return build_model_page(
        reader, endpoint_name=endpoint or DEFAULT_ENDPOINT, run_limit=runs, training_job=training_job
    )


EndpointQuery = Annotated[str | None, Query(pattern=ENDPOINT_NAME, description="SageMaker endpoint name")]
RunsQuery = Annotated[int, Query(ge=1, le=MAX_RUNS, description="How many of the newest runs")]
JobQuery = Annotated[
    str | None, Query(pattern=TRAINING_JOB_NAME, description="Training job whose curves to show")
]


@app.get("/", response_class=HTMLResponse)
def model_page(
    _: Reader, endpoint: EndpointQuery = None, runs: RunsQuery = 20, training_job: JobQuery = None
):
    from dog_breed.ui import charts
    from dog_breed.ui.page import resource_links

    reader = aws_reader()
    page = _page(reader, endpoint, runs, training_job)
    # Links need the partition; without AWS (already a problem on the page) assume the usual one.
    partition = reader.partition if page.region else "aws"
    return render(
        "model_page.html",
        page=page,
        links=resource_links(page, partition=partition, endpoint_url=page.endpoint_url),
        accuracy_chart=charts.accuracy_over_runs(page.runs),
        curves_chart=charts.training_curves(page.curves) if page.curves.epochs else None,
        plotly_version=plotly_version(),
        run_limit=runs,
    )


@app.get("/api/model-page")
def model_page_json(
    _: Reader, endpoint: EndpointQuery = None, runs: RunsQuery = 20, training_job: JobQuery = None
) -> JSONResponse:
    """The page's view model: live endpoint, runs, training curves, profiler report, smoke test."""
    return JSONResponse(_page(aws_reader(), endpoint, runs, training_job).as_dict())


@app.get("/smoke-test/thumbnail.jpg")
def smoke_test_thumbnail(
    _: Reader,
    run_id: Annotated[str, Query(min_length=1, max_length=250)],
    index: Annotated[int, Query(ge=0, le=1000)],
) -> Response:
    """Image ``index`` of run ``run_id``'s smoke test (read from S3 through the connection)."""
    from PIL import Image, UnidentifiedImageError

    from dog_breed.params import DEFAULT_DATASET_URI
    from dog_breed.ui import airflow_reads, view_model
    from dog_breed.ui.aws_reads import NotFound

    found = airflow_reads.recent_runs(DAG_ID, 1, run_id=run_id)
    if not found:
        raise HTTPException(404, f"no run {run_id!r} of {DAG_ID}")
    uri = view_model.smoke_test_image(found[0], index, DEFAULT_DATASET_URI)
    if uri is None:
        raise HTTPException(404, f"run {run_id} has no smoke-test prediction {index}")
    try:
        data, _ = aws_reader().read_object(uri, MAX_IMAGE_BYTES)
    except NotFound as error:
        raise HTTPException(404, f"{uri} is not in S3 (any more)") from error
    except ValueError as error:
        raise HTTPException(502, str(error)) from error
    except Exception as error:
        raise aws_failure(error, uri) from error
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
            thumbnail = image.convert("RGB")
            thumbnail.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise HTTPException(502, f"{uri} is not an image Pillow can read: {error}") from error
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=85)
    return Response(
        buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


@app.get("/profiler-report")
def profiler_report(_: Reader, training_job: Annotated[str, Query(pattern=TRAINING_JOB_NAME)]) -> Response:
    """The ProfilerReport rule's HTML report of a training job, or a page saying there is none yet."""
    from dog_breed.ui import view_model
    from dog_breed.ui.aws_reads import NotFound

    reader = aws_reader()
    try:
        training = reader.training_job(training_job)
    except Exception as error:
        raise aws_failure(error, f"training job {training_job}") from error
    if training is None:
        raise HTTPException(404, f"no training job {training_job}")
    located = view_model.profiler_report_location(training)
    if located is None:
        return render(
            "message.html",
            404,
            title="No profiler report",
            message=f"Training job {training_job} ran without the ProfilerReport rule.",
        )
    uri, status = located
    try:
        data, _ = reader.read_object(uri, MAX_REPORT_BYTES)
    except NotFound:
        rule_status = status.get("RuleEvaluationStatus", "unknown")
        details = status.get("StatusDetails") or ""
        return render(
            "message.html",
            404,
            title="No profiler report yet",
            message=f"No report at {uri} (ProfilerReport rule: {rule_status}). {details}".strip(),
        )
    except ValueError as error:
        raise HTTPException(502, str(error)) from error
    except Exception as error:
        raise aws_failure(error, uri) from error
    return HTMLResponse(data, headers=REPORT_HEADERS)


@app.get("/aws/{service}/{kind}/{name:path}")
def aws_description(_: Reader, service: str, kind: str, name: str, format: str = "html") -> Response:
    """A resource's Describe* answer: what the operators' extra links open when offline."""
    from dog_breed.ui.aws_reads import DESCRIBERS, NotFound, describe

    if format not in ("html", "json"):
        raise HTTPException(400, "format is html or json")
    describer = DESCRIBERS.get((service, kind))
    if describer is None:
        known = ", ".join(f"{s}/{k}" for s, k in DESCRIBERS)
        raise HTTPException(404, f"no description page for {service}/{kind}; there are: {known}")
    reader = aws_reader()
    try:
        answer = describe(reader, service, kind, name)
    except ValueError as error:
        raise HTTPException(400, str(error)) from error
    except NotFound as error:
        raise HTTPException(404, str(error)) from error
    except Exception as error:
        raise aws_failure(error, f"{describer.title} {name}") from error
    text = json.dumps(answer, indent=2, default=str)
    if format == "json":
        return Response(text, media_type="application/json")
    return render(
        "description.html",
        title=f"{describer.title} {name}",
        service=service,
        region=reader.region,
        endpoint_url=reader.endpoint_url(service),
        document=text,
    )


# -- static files -----------------------------------------------------------------------------
@cache
def plotly_version() -> str:
    from importlib.metadata import version

    return version("plotly")


_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


@app.get("/static/plotly-{version}.min.js")
def plotly_js(version: str) -> FileResponse:
    """plotly.js as plotly's Python package ships it (the browser may have no internet)."""
    from importlib.resources import files

    if version != plotly_version():
        raise HTTPException(404, f"this server has plotly {plotly_version()}, not {version}")
    path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    return FileResponse(path, media_type="text/javascript", headers=_IMMUTABLE)


@app.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    path = STATIC / name
    if not re.fullmatch(r"[a-z_]+\.(js|css)", name) or not path.is_file():
        raise HTTPException(404, f"no static file {name!r}")
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=300"})
