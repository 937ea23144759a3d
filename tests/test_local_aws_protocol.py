"""local_aws's protocol layer: routing, parsing, validation and error shapes from botocore's models."""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from werkzeug.datastructures import MultiDict

from local_aws.devtools.sandbox import client as local_client
from local_aws.protocol.api import Api, operation, service_model
from local_aws.protocol.errors import AwsError, error_response
from local_aws.protocol.parsing import parse_json_request, parse_rest_request
from local_aws.protocol.patterns import matches, translate
from local_aws.protocol.routing import RestRouter
from local_aws.protocol.server import LocalAwsServer
from local_aws.protocol.validation import validate, validation_message
from local_aws.services.base import Service

LIMIT = 200  # bytes: more than the other tests send, less than the oversize one


class BrokenSageMaker(Service):
    """A SageMaker service with a bug, and a front end that takes at most LIMIT bytes."""

    api = Api("sagemaker", max_request_bytes=LIMIT)

    @operation("ListModels")
    def list_models(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"Models": {}["missing"]}

    @operation("CreateTrainingJob")
    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("validation comes first: a broken request never reaches the handler")


class BrokenLambda(Service):
    api = Api("lambda", internal_error="ServiceException", malformed_request="InvalidRequestContentException")

    @operation("CreateFunction")
    def create_function(self, request: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("FunctionName")


class ExtendedAutoScaling(Service):
    """One operation of a moto-kept API served here, the rest left to moto, moto's answer reused."""

    api = Api("application-autoscaling", moto_serves_the_rest=True)

    @operation("DescribeScalableTargets")
    def describe_scalable_targets(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.context.moto is not None
        stored = self.context.moto.call("application-autoscaling", "DescribeScalableTargets", request)
        return {"ScalableTargets": [{**t, "MaxCapacity": 99} for t in stored["ScalableTargets"]]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAwsServer]:
    services = {
        "broken-sagemaker": f"{__name__}:BrokenSageMaker",
        "broken-lambda": f"{__name__}:BrokenLambda",
        "extended-autoscaling": f"{__name__}:ExtendedAutoScaling",
    }
    with LocalAwsServer(tmp_path_factory.mktemp("protocol"), service_classes=services) as running:
        yield running


def client(server: LocalAwsServer, service: str, validate: bool = False) -> Any:
    return local_client(service, server.url, parameter_validation=validate, retries={"total_max_attempts": 1})


def raw(server: LocalAwsServer, service: str, path: str, body: bytes | None = None, **headers: str) -> tuple:
    """(status, headers, parsed body) of a hand-made request signed (in name) for ``service``."""
    credential = (
        f"AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host"
    )
    request = urllib.request.Request(
        server.url + path,
        data=body,
        headers={"Authorization": credential, **headers},
        method="POST" if body else "GET",
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"{}")


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response


# -- over the wire --------------------------------------------------------------------------------------
def test_unknown_operations_are_400_unknown_operation_exception(server: LocalAwsServer) -> None:
    status, headers, body = raw(server, "sagemaker", "/", b"{}", **{"X-Amz-Target": "SageMaker.Teleport"})
    assert (status, headers["x-amzn-ErrorType"]) == (400, "UnknownOperationException")
    assert body["__type"] == "UnknownOperationException" and "Teleport" in body["message"]
    status, headers, body = raw(server, "lambda", "/2015-03-31/teleport")
    assert (status, headers["x-amzn-ErrorType"]) == (400, "UnknownOperationException")
    assert "GET /2015-03-31/teleport" in body["Message"] and body["Type"] == "User"


def test_an_operation_the_model_has_but_local_aws_lacks_is_a_501_naming_it(server: LocalAwsServer) -> None:
    error = error_of(lambda: client(server, "sagemaker").describe_feature_group(FeatureGroupName="g"))
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert error["Error"]["Code"] == "NotImplemented"
    assert error["Error"]["Message"] == "local_aws does not implement SageMaker DescribeFeatureGroup"


def test_a_bug_inside_a_handler_is_a_500_that_says_so(
    server: LocalAwsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="local_aws")
    sagemaker = error_of(lambda: client(server, "sagemaker").list_models())
    lam = error_of(
        lambda: client(server, "lambda").create_function(
            FunctionName="f", Role="arn:aws:iam::123456789012:role/r", Code={"ZipFile": b"zip"}
        )
    )

    assert (sagemaker["ResponseMetadata"]["HTTPStatusCode"], sagemaker["Error"]["Code"]) == (
        500,
        "InternalFailure",
    )
    assert sagemaker["Error"]["Message"] == "local_aws internal error in ListModels: KeyError: 'missing'"
    assert (lam["ResponseMetadata"]["HTTPStatusCode"], lam["Error"]["Code"]) == (500, "ServiceException")
    assert "KeyError: 'FunctionName'" in lam["Error"]["Message"]  # never "missing parameter"
    logged = [r for r in caplog.records if "failed inside local_aws" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info for r in logged)


def test_a_service_extends_a_moto_kept_api_operation_by_operation(server: LocalAwsServer) -> None:
    """Unserved operations go to moto unread; a served one may build on moto's own answer;
    moto's errors come back as the API's errors."""
    autoscaling = client(server, "application-autoscaling", validate=True)
    target = {"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/e/variant/v",
              "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}  # fmt: skip
    autoscaling.register_scalable_target(**target, MinCapacity=1, MaxCapacity=2)  # moto's
    (described,) = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[target["ResourceId"]]
    )["ScalableTargets"]  # the server is shared: other tests' targets are there too
    assert (described["ResourceId"], described["MinCapacity"], described["MaxCapacity"]) == (
        "endpoint/e/variant/v", 1, 99,
    )  # fmt: skip
    assert server.app.routing_table()["application-autoscaling"] == ["DescribeScalableTargets"]
    missing = error_of(
        lambda: autoscaling.deregister_scalable_target(**{**target, "ResourceId": "endpoint/x/variant/v"})
    )
    assert (
        missing["Error"]["Code"] == "ValidationException"
        and "No scalable target found" in missing["Error"]["Message"]
    )
    with pytest.raises(AwsError) as raised:
        server.app.context.moto.call("application-autoscaling", "DeregisterScalableTarget",
                                     {**target, "ResourceId": "endpoint/x/variant/v"})  # fmt: skip
    assert (raised.value.code, raised.value.status) == ("ValidationException", 400)


def test_a_body_that_is_not_json_is_the_apis_serialization_error(server: LocalAwsServer) -> None:
    status, headers, body = raw(
        server, "sagemaker", "/", b"{not json", **{"X-Amz-Target": "SageMaker.ListModels"}
    )
    assert (status, body["__type"]) == (400, "SerializationException")
    status, headers, body = raw(server, "lambda", "/2015-03-31/functions", b"[1, 2]")
    assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestContentException")


def test_the_front_end_refuses_a_body_over_the_apis_limit_unread(server: LocalAwsServer) -> None:
    status, _, body = raw(
        server, "sagemaker", "/", b"{" + b" " * LIMIT + b"}", **{"X-Amz-Target": "SageMaker.ListModels"}
    )
    assert status == 413
    assert body["message"] == f"Request must be smaller than {LIMIT} bytes for the ListModels operation"


def test_several_violations_come_in_one_message_in_aws_words(server: LocalAwsServer) -> None:
    error = error_of(
        lambda: client(server, "sagemaker").create_training_job(
            TrainingJobName="x_y", OutputDataConfig={"S3OutputPath": "s3://b/o"}
        )
    )
    pattern = service_model("sagemaker").shape_for("TrainingJobName").metadata["pattern"]
    assert error["Error"]["Code"] == "ValidationException"
    assert error["Error"]["Message"] == (
        "2 validation errors detected: "
        "Value 'x_y' at 'trainingJobName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {pattern}; "
        "Value null at 'roleArn' failed to satisfy constraint: Member must not be null"
    )


# -- validation against the real models -------------------------------------------------------------
def shape(service: str, operation_name: str) -> Any:
    return service_model(service).operation_model(operation_name).input_shape


def messages(service: str, operation_name: str, params: dict[str, Any]) -> list[str]:
    return [str(violation) for violation in validate(shape(service, operation_name), params)]


def test_paths_are_lower_camel_case_with_list_members_numbered() -> None:
    found = messages(
        "sagemaker",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "ok"}, {"VariantName": "not_ok"}]},
    )
    assert found == [
        "Value 'not_ok' at 'productionVariants.2.member.variantName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: "
        + service_model("sagemaker").shape_for("VariantName").metadata["pattern"]
    ]


def test_ranges_types_enums_and_missing_members() -> None:
    assert messages("lambda", "CreateFunction", {"FunctionName": "f", "Role": "x", "Code": {}, "Timeout": 0})[
        -1
    ] == (
        "Value '0' at 'timeout' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    assert messages("lambda", "ListFunctions", {"MaxItems": "ten"}) == [
        "Value 'ten' at 'maxItems' failed to satisfy constraint: Member must be an integer"
    ]
    assert messages("lambda", "Invoke", {"FunctionName": "f", "InvocationType": "Later"}) == [
        "Value 'Later' at 'invocationType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
    ]
    assert messages("sagemaker", "DescribeModel", {}) == [
        "Value null at 'modelName' failed to satisfy constraint: Member must not be null"
    ]


def test_map_entries_are_summed_up_as_aws_does() -> None:
    found = messages("lambda", "TagResource", {"Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                                              "Tags": {"k" * 129: "v"}})  # fmt: skip
    assert len(found) == 1 and found[0].startswith(
        f"Value '{{{'k' * 129}=v}}' at 'tags' failed to satisfy constraint:"
    )
    assert "Map keys must satisfy constraint: [Member must have length less than or equal to 128" in found[0]


def test_java_patterns_are_matched_not_skipped() -> None:
    """\\p{ASCII}, \\p{Print}, \\z and Java's surrogate-pair ranges: what re cannot compile."""
    assert messages(
        "sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "e", "Body": b"", "ContentType": "é"}
    )
    assert not messages(
        "sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "e", "Body": b"", "ContentType": "a/b"}
    )
    assert messages(
        "sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "e", "Body": b"", "InferenceId": " id"}
    )
    assert translate(r"\A\S\z") == r"\A\S\Z"
    surrogates = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*"
    assert matches(surrogates, "emoji 🐕 ok") and not matches(surrogates, "bell \x07")


def test_validation_message_counts_its_errors() -> None:
    violations = validate(shape("sagemaker", "DescribeModel"), {})
    assert validation_message(violations).startswith("1 validation error detected: Value null")
    assert validation_message(violations * 2).startswith("2 validation errors detected: ")


# -- routing and parsing ------------------------------------------------------------------------------
LAMBDA_ROUTES = RestRouter(service_model("lambda"))


def route(method: str, path: str, **query: str) -> tuple[str, dict[str, str]] | None:
    found = LAMBDA_ROUTES.match(method, path, MultiDict(query))
    return (found[0].name, found[1]) if found else None


def test_query_literals_pick_the_more_specific_operation() -> None:
    path = "/2019-09-30/functions/f/provisioned-concurrency"
    assert route("GET", path, List="ALL") == ("ListProvisionedConcurrencyConfigs", {"FunctionName": "f"})
    assert route("GET", path, Qualifier="1") == ("GetProvisionedConcurrencyConfig", {"FunctionName": "f"})
    assert route("PUT", path)[0] == "PutProvisionedConcurrencyConfig"
    assert route("PATCH", path) is None


def test_labels_are_one_segment_percent_decoded_and_a_trailing_slash_is_fine() -> None:
    arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af%3Alive"
    assert route("GET", f"/2015-03-31/functions/{arn}/") == (
        "GetFunction",
        {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f:live"},
    )
    assert route("GET", "/2015-03-31/functions/a%2Fb/aliases/x") == (
        "GetAlias",
        {"FunctionName": "a/b", "Name": "x"},
    )
    assert route("GET", "/2015-03-31/functions/a/b/aliases/x") is None


def test_greedy_labels_take_the_rest_of_the_path() -> None:
    from botocore.model import ServiceModel

    model = ServiceModel(
        {
            "metadata": {"protocol": "rest-json", "serviceId": "Files", "signingName": "files",
                         "apiVersion": "1"},
            "operations": {
                "GetFile": {"name": "GetFile", "input": {"shape": "GetFileRequest"},
                            "http": {"method": "GET", "requestUri": "/files/{Bucket}/{Key+}"}},
            },
            "shapes": {
                "GetFileRequest": {"type": "structure", "required": ["Bucket", "Key"], "members": {
                    "Bucket": {"shape": "String", "location": "uri", "locationName": "Bucket"},
                    "Key": {"shape": "String", "location": "uri", "locationName": "Key"}}},
                "String": {"type": "string"},
            },
        }
    )  # fmt: skip
    operation_model, labels = RestRouter(model).match("GET", "/files/b/a/deep/key.txt", MultiDict())
    assert (operation_model.name, labels) == ("GetFile", {"Bucket": "b", "Key": "a/deep/key.txt"})


def test_json_requests_get_datetimes_and_bytes_where_the_shape_says() -> None:
    """botocore sends epoch seconds and base64; handlers compare datetimes and read bytes."""
    listing = service_model("sagemaker").operation_model("ListTrainingJobs")
    params = parse_json_request(listing, b'{"CreationTimeAfter": 0, "MaxResults": 5, "Unknown": 1}')
    assert params == {"CreationTimeAfter": dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "MaxResults": 5}
    create = service_model("lambda").operation_model("CreateFunction")
    params = parse_rest_request(
        create, {}, MultiDict(), {}, b'{"FunctionName": "f", "Code": {"ZipFile": "emlw"}}'
    )
    assert params == {"FunctionName": "f", "Code": {"ZipFile": b"zip"}}


def test_rest_requests_become_one_dict_shaped_like_the_input() -> None:
    invoke = service_model("lambda").operation_model("Invoke")
    params = parse_rest_request(
        invoke,
        {"FunctionName": "f"},
        MultiDict({"Qualifier": "live"}),
        {"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "Tail"},
        b'{"a": 1}',
    )
    assert params == {
        "FunctionName": "f",
        "Qualifier": "live",
        "InvocationType": "Event",
        "LogType": "Tail",
        "Payload": b'{"a": 1}',
    }
    untag = service_model("lambda").operation_model("UntagResource")
    params = parse_rest_request(
        untag, {"Resource": "r"}, MultiDict([("tagKeys", "a"), ("tagKeys", "b")]), {}, b""
    )
    assert params == {"Resource": "r", "TagKeys": ["a", "b"]}


# -- error shapes --------------------------------------------------------------------------------------
def test_error_statuses_and_members_come_from_the_models_error_shapes() -> None:
    throttle = AwsError(
        "TooManyRequestsException",
        "Rate Exceeded.",
        fields={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "retryAfterSeconds": "1"},
    )
    response = error_response(service_model("lambda"), throttle)
    assert (response.status_code, response.headers["x-amzn-ErrorType"]) == (429, "TooManyRequestsException")
    assert response.headers["Retry-After"] == "1"  # a header-bound member of the error shape
    assert json.loads(response.get_data()) == {
        "message": "Rate Exceeded.",
        "Type": "User",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }
    missing = json.loads(
        error_response(service_model("lambda"), AwsError("ResourceNotFoundException", "m")).data
    )
    assert missing == {"Message": "m", "Type": "User"}  # this shape spells it Message
    model_error = error_response(
        service_model("sagemaker-runtime"), AwsError("ModelError", "m", fields={"OriginalStatusCode": 400})
    )
    assert model_error.status_code == 424 and json.loads(model_error.data) == {
        "Message": "m",
        "OriginalStatusCode": 400,
    }
    sagemaker = error_response(service_model("sagemaker"), AwsError("ResourceInUse", "taken"))
    assert (sagemaker.status_code, json.loads(sagemaker.data)) == (
        400,
        {"__type": "ResourceInUse", "message": "taken"},
    )
