"""SageMaker PyTorch serving handlers for the dog-breed classifier.

The model server calls ``model_fn(model_dir)`` once, then per request
``input_fn`` -> ``predict_fn`` -> ``output_fn``. ``preprocess`` is the single
image pipeline shared by serving, training's evaluation/calibration and the
benchmarks, so what the model sees in production is what it was measured on.

Errors: every client mistake raises ``InferenceError`` with an HTTP status.
With the SageMaker inference toolkit installed it *is* a
``sagemaker_inference.errors.GenericInferenceToolkitError``, which the
toolkit's ``Transformer.transform`` answers with that status code (anything
else becomes a 500). Without the toolkit it is a local class with the same
``status_code`` / ``message`` / ``phrase`` attributes, which the offline model
server maps the same way.

Runtime: ``DOG_BREED_RUNTIME`` = ``auto`` (default: when ``model.int8.onnx``
exists, the first of OpenVINO and onnxruntime that loads it, else PyTorch),
``openvino`` or ``onnx`` (that runtime, required) or ``torch``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import serving_contract
from PIL import Image, ImageOps
from serving_contract import (
    DEFAULT_TOP_K,
    IMAGE_CONTENT_TYPES,
    JSON_CONTENT_TYPE,
    MAX_TOP_K,
    ONNX_MODEL_FILE,
    read_model_config,
)

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time payload limit
MAX_SIDE = 10_000
MAX_PIXELS = 40_000_000
ACCEPTED_RESPONSE_TYPES = frozenset({"application/json", "application/*", "*/*"})
RUNTIME_ENV = "DOG_BREED_RUNTIME"

# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; we treat both as errors.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

try:
    from sagemaker_inference.errors import GenericInferenceToolkitError as _ToolkitError
except ImportError:

    class _ToolkitError(Exception):  # type: ignore[no-redef]
        """Same attributes as sagemaker_inference's error, for servers without the toolkit."""

        def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None):
            self.status_code = status_code
            self.message = message or "Invalid Request"
            self.phrase = phrase or self.message
            super().__init__(status_code, self.message, self.phrase)


class InferenceError(_ToolkitError):
    """A request the server must answer with ``status_code`` and ``message``."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message, message)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class Predictor(Protocol):
    classes: list[str]
    image_size: int
    runtime: str

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ImageRequest:
    """What ``input_fn`` hands to ``predict_fn``: checked image bytes and how many answers."""

    image_bytes: bytes
    top_k: int


# ---------------------------------------------------------------- preprocessing


def resize_side(image_size: int) -> int:
    """Shorter side before the centre crop (256 for 224, as in ImageNet evaluation)."""
    return round(image_size * 256 / 224)


def open_image(image_bytes: bytes) -> Image.Image:
    """Open (header only) and check dimensions; raises InferenceError for anything unusable."""
    if not image_bytes:
        raise InferenceError(400, "empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(image_bytes))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InferenceError(413, f"image rejected as a decompression bomb: {error}") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InferenceError(400, f"cannot decode image: {error}") from error
    width, height = image.size
    if width < 1 or height < 1:
        raise InferenceError(400, f"image has no pixels ({width}x{height})")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise InferenceError(
            413, f"image is {width}x{height}; limits are {MAX_SIDE} px a side and {MAX_PIXELS} pixels"
        )
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        peak = 255.0 if image.mode == "F" and pixels.max(initial=0) <= 255 else 65535.0
        grey = np.clip(pixels * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def decode_rgb(image_bytes: bytes, min_side: int) -> Image.Image:
    """Decode to an upright RGB image whose shorter side is still >= ``min_side`` when it was."""
    image = open_image(image_bytes)
    if image.format == "JPEG":
        # DCT-domain downscaling: decodes a 4000 px photo at 1/8 the cost when 256 px is enough.
        image.draft(None, (min_side, min_side))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InferenceError(400, f"cannot decode image: {error}") from error


def preprocess(image_bytes: bytes, image_size: int) -> np.ndarray:
    """Image bytes -> normalized float32 CHW array (3, S, S): resize shorter side, centre crop.

    Resize and crop are one ``Image.resize`` call with a source box, which is
    what ``Resize(round(S*256/224))`` + ``CenterCrop(S)`` compute, in one pass.
    """
    side = resize_side(image_size)
    image = decode_rgb(image_bytes, side)
    width, height = image.size
    crop = image_size * min(width, height) / side  # crop edge in source pixels
    box = ((width - crop) / 2, (height - crop) / 2, (width + crop) / 2, (height + crop) / 2)
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(
        IMAGENET_STD, dtype=np.float32
    )
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# ---------------------------------------------------------------- model loading


class TorchPredictor:
    """PyTorch eager fp32 predictor (channels_last, inference_mode)."""

    runtime = "torch-fp32"

    def __init__(self, model_dir: str | Path):
        import torch
        from torchvision.models import resnet50

        config = read_model_config(model_dir)
        self.classes: list[str] = list(config["classes"])
        self.image_size: int = int(config["image_size"])
        model = resnet50(weights=None, num_classes=int(config["num_classes"]))
        state = torch.load(Path(model_dir) / "model.pth", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        torch.set_flush_denormal(True)  # denormals slow CPU convolutions several-fold
        self._torch = torch
        self._model = model.eval().to(memory_format=torch.channels_last)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        expected = (3, self.image_size, self.image_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"batch must be (N, {', '.join(map(str, expected))}), got {batch.shape}")
        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            logits = self._model(inputs.contiguous(memory_format=torch.channels_last))
            return torch.softmax(logits.float(), dim=1).numpy()


def _int8_predictor(runtime: str, model_dir: Path) -> Predictor:
    from fast_serving import OnnxPredictor, OpenVinoPredictor

    return {"openvino": OpenVinoPredictor, "onnx": OnnxPredictor}[runtime](model_dir)


INT8_RUNTIMES = ("openvino", "onnx")  # auto's order: fastest first (bench: model-only section)


def model_fn(model_dir: str) -> Predictor:
    """Load the predictor the ``DOG_BREED_RUNTIME`` environment variable asks for."""
    choice = os.environ.get(RUNTIME_ENV, "auto").strip().lower() or "auto"
    choices = ("auto", *INT8_RUNTIMES, "torch")
    if choice not in choices:
        raise ValueError(f"{RUNTIME_ENV} must be {', '.join(choices[:-1])} or {choices[-1]}, got {choice!r}")
    directory = Path(model_dir)
    has_onnx = (directory / ONNX_MODEL_FILE).is_file()
    predictor: Predictor | None = None
    if choice in INT8_RUNTIMES:
        if not has_onnx:
            raise FileNotFoundError(
                f"{RUNTIME_ENV}={choice} but {directory / ONNX_MODEL_FILE} does not exist"
            )
        predictor = _int8_predictor(choice, directory)
    elif choice == "auto" and has_onnx:
        for runtime in INT8_RUNTIMES:
            try:
                predictor = _int8_predictor(runtime, directory)
                break
            except Exception as error:  # any failure of a fast path falls back to the next runtime
                logger.warning("int8 model not usable with %s (%s: %s)", runtime, type(error).__name__, error)
    if predictor is None:
        predictor = TorchPredictor(directory)
    # A request the server makes itself: the first one pays Pillow's plugin set-up (~40 ms before
    # its first decode) and the runtime's buffers and shape-specific kernels (OpenVINO: ~50 ms
    # against ~4 after). The server answers /ping only once model_fn returns, so no request does.
    # Only an optimization: a handler that fails on this grey image still loads, and the real
    # requests' errors show (and trip the endpoint's 5xx alarms) as they would without it.
    warm_up = io.BytesIO()
    Image.new("RGB", (predictor.image_size, predictor.image_size), (128, 128, 128)).save(warm_up, "JPEG")
    try:
        predict_fn(input_fn(warm_up.getvalue(), "image/jpeg"), predictor)
    except Exception as error:
        logger.warning("warm-up request failed (%s: %s); serving anyway", type(error).__name__, error)
    logger.info(
        "serving %d classes at %d px with %s", len(predictor.classes), predictor.image_size, predictor.runtime
    )
    return predictor


# ---------------------------------------------------------------- request handling


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _as_bytes(request_body: Any) -> bytes:
    if isinstance(request_body, str):
        return request_body.encode("utf-8")
    if isinstance(request_body, bytes | bytearray | memoryview):
        return bytes(request_body)
    raise InferenceError(400, f"unsupported request body type {type(request_body).__name__}")


def parse_top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InferenceError(400, f"top_k must be an integer between 1 and {MAX_TOP_K}")
    if not 1 <= value <= MAX_TOP_K:
        raise InferenceError(400, f"top_k must be between 1 and {MAX_TOP_K}, got {value}")
    return value


def _parse_json_request(body: bytes) -> ImageRequest:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InferenceError(400, f"body is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise InferenceError(400, 'JSON body must be an object like {"image": "<base64>", "top_k": 5}')
    encoded = payload.get("image")
    if not isinstance(encoded, str) or not encoded:
        raise InferenceError(400, 'JSON body needs "image": a non-empty base64 string')
    try:
        image_bytes = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InferenceError(400, f'"image" is not valid base64: {error}') from error
    top_k = parse_top_k(payload["top_k"]) if payload.get("top_k") is not None else DEFAULT_TOP_K
    return ImageRequest(image_bytes, top_k)


def input_fn(request_body: Any, content_type: str) -> ImageRequest:
    """Validate a request: raw image bytes or JSON ``{"image": base64, "top_k": 1..20}``."""
    media_type = _media_type(content_type)
    if media_type not in IMAGE_CONTENT_TYPES and media_type != JSON_CONTENT_TYPE:
        accepted = ", ".join(sorted(IMAGE_CONTENT_TYPES | {JSON_CONTENT_TYPE}))
        raise InferenceError(415, f"unsupported content type {content_type!r}; use one of {accepted}")
    body = _as_bytes(request_body)
    if len(body) > MAX_BODY_BYTES:
        raise InferenceError(413, f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    if not body:
        raise InferenceError(400, "request body is empty")
    request = (
        _parse_json_request(body) if media_type == JSON_CONTENT_TYPE else ImageRequest(body, DEFAULT_TOP_K)
    )
    open_image(request.image_bytes)  # header check now: bad bytes never reach the model
    return request


def predict_fn(data: ImageRequest, model: Predictor) -> dict[str, Any]:
    batch = preprocess(data.image_bytes, model.image_size)[np.newaxis]
    probabilities = np.asarray(model.predict(batch), dtype=np.float32)[0]
    return {
        "probabilities": probabilities,
        "top_k": min(data.top_k, len(model.classes)),
        "classes": model.classes,
        "runtime": model.runtime,
    }


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    """JSON with the top-k breeds, most probable first."""
    media_types = {_media_type(part) for part in (accept or "*/*").split(",")}
    if not media_types & ACCEPTED_RESPONSE_TYPES:
        raise InferenceError(406, f"cannot produce {accept!r}; this endpoint answers application/json")
    probabilities = prediction["probabilities"]
    top_k = prediction["top_k"]
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    classes = prediction["classes"]
    predictions = [
        serving_contract.prediction(classes[index], int(index), float(probabilities[index]))
        for index in order
    ]
    return json.dumps(serving_contract.response(predictions, top_k, prediction["runtime"]))
