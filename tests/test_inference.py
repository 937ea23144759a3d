"""inference.py: preprocessing, runtimes, and the SageMaker handler chain with good and bad requests."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from functools import partial

import inference
import numpy as np
import pytest
import serving_contract
from inference import InferenceError, input_fn, model_fn, output_fn, predict_fn, preprocess
from PIL import Image
from torchvision import transforms

SIZE = 32


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient_image(width: int = 90, height: int = 60) -> Image.Image:
    """Asymmetric content, so rotations and crops are visible in the numbers."""
    xs, ys = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    pixels = np.stack([xs, ys, 255 - xs], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def torch_predictor(trained_model_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(inference.RUNTIME_ENV, "torch")
        return model_fn(str(trained_model_dir))


def status_of(call) -> InferenceError:
    with pytest.raises(InferenceError) as raised:
        call()
    error = raised.value
    assert isinstance(error.status_code, int) and isinstance(error.message, str) and error.phrase
    assert len(error.message.split()) >= 2, error.message  # a sentence, not a code
    return error


# ---------------------------------------------------------------- preprocessing


def reference_eval_transform(image_size: int) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize(inference.resize_side(image_size)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(inference.IMAGENET_MEAN, inference.IMAGENET_STD),
        ]
    )


def test_preprocess_equals_resize_then_center_crop():
    # 28 px: resize side 32, so a 128x64 image scales by exactly 1/2 and both crops start on whole pixels.
    image = gradient_image(128, 64)
    ours = preprocess(encode(image), 28)
    assert ours.shape == (3, 28, 28) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_eval_transform(28)(image).numpy(), atol=0.02)
    # Elsewhere torchvision rounds the crop to whole pixels and ours stays centred: sub-pixel apart.
    other = gradient_image(150, 100)
    difference = preprocess(encode(other), SIZE) - reference_eval_transform(SIZE)(other).numpy()
    assert np.abs(difference).mean() < 0.06


def test_large_jpeg_decoded_at_reduced_size_matches_full_decode():
    image = gradient_image(1600, 1200)
    data = encode(image, "JPEG", quality=95)
    drafted = preprocess(data, SIZE)
    full = preprocess(encode(image), SIZE)  # PNG: no draft
    assert np.abs(drafted - full).mean() < 0.05
    decoded = inference.decode_rgb(data, inference.resize_side(SIZE))
    assert min(decoded.size) < 1200 and min(decoded.size) >= inference.resize_side(SIZE)


def test_exif_rotation_is_applied():
    image = gradient_image(64, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was rotated; viewers turn it 90 degrees clockwise
    tagged = preprocess(encode(image, "JPEG", quality=95, exif=exif), SIZE)
    upright = preprocess(encode(image.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95), SIZE)
    unrotated = preprocess(encode(image, "JPEG", quality=95), SIZE)
    assert np.abs(tagged - upright).mean() < 0.05
    assert np.abs(tagged - unrotated).mean() > 0.3


def test_transparency_is_composited_on_white():
    transparent = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    np.testing.assert_allclose(
        preprocess(encode(transparent), SIZE), preprocess(encode(white), SIZE), atol=1e-5
    )


def image_in_mode(mode: str) -> bytes:
    base = gradient_image(48, 40)
    if mode == "CMYK":
        return encode(base.convert("CMYK"), "JPEG")
    if mode == "I;16":
        sixteen_bit = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        assert sixteen_bit.mode.startswith("I")
        return encode(sixteen_bit)
    if mode == "P+transparency":
        palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return encode(palette, transparency=0)
    if mode == "RGBA":
        rgba = base.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(base.size))
        return encode(rgba)
    fmt = "JPEG" if mode in ("L", "RGB") else "PNG"
    return encode(base.convert(mode), fmt)


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "P+transparency", "CMYK", "I;16", "1"])
def test_every_image_mode_is_served(mode, torch_predictor):
    data = image_in_mode(mode)
    array = preprocess(data, SIZE)
    assert array.shape == (3, SIZE, SIZE) and np.isfinite(array).all()
    request = input_fn(data, "application/x-image")
    answer = json.loads(output_fn(predict_fn(request, torch_predictor), "application/json"))
    assert len(answer["predictions"]) == 4


# ---------------------------------------------------------------- model_fn and the handler chain


def test_round_trip_through_the_handlers(torch_predictor, sample_dataset_dir):
    assert torch_predictor.runtime == "torch-fp32" and torch_predictor.image_size == SIZE
    correct = total = 0
    for class_dir in sorted((sample_dataset_dir / "test").iterdir()):
        for path in sorted(class_dir.glob("*.jpg")):
            request = input_fn(path.read_bytes(), "image/jpeg")
            answer = json.loads(output_fn(predict_fn(request, torch_predictor), "application/json"))
            assert answer["runtime"] == "torch-fp32" and answer["top_k"] == 4  # default 5, capped
            top = answer["predictions"]
            probabilities = [entry["probability"] for entry in top]
            assert probabilities == sorted(probabilities, reverse=True)
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)
            assert top[0]["class_folder"] == torch_predictor.classes[top[0]["index"]]
            correct += top[0]["class_folder"] == class_dir.name
            total += 1
    assert correct / total >= 0.6  # 4 classes: chance is 0.25


def test_json_request_with_top_k(torch_predictor, sample_dataset_dir):
    image = next((sample_dataset_dir / "test" / "002.Afghan_hound").glob("*.jpg")).read_bytes()
    body = json.dumps({"image": base64.b64encode(image).decode(), "top_k": 2})
    request = input_fn(body, "application/json; charset=utf-8")  # the toolkit hands JSON over as str
    answer = json.loads(output_fn(predict_fn(request, torch_predictor), "*/*"))
    assert answer["top_k"] == 2 and len(answer["predictions"]) == 2
    assert set(serving_contract.PREDICTION_FIELDS) == set(answer["predictions"][0])
    assert answer["predictions"][0]["breed"] == serving_contract.breed_name(
        answer["predictions"][0]["class_folder"]
    )
    assert serving_contract.breed_name("002.Afghan_hound") == "Afghan hound"


def test_answers_keep_the_serving_contract(torch_predictor, sample_dataset_dir):
    """What output_fn writes is what the smoke test checks (serving_contract.response_problems)."""
    image = next((sample_dataset_dir / "test" / "003.Airedale_terrier").glob("*.jpg")).read_bytes()
    for top_k in (1, 3):
        body = json.dumps({"image": base64.b64encode(image).decode(), "top_k": top_k})
        answer = json.loads(output_fn(predict_fn(input_fn(body, "application/json"), torch_predictor), "*/*"))
        assert serving_contract.response_problems(answer, classes=torch_predictor.classes, top_k=top_k) == []
    broken = {**answer, "predictions": answer["predictions"][::-1] + answer["predictions"]}
    assert serving_contract.response_problems(broken, classes=torch_predictor.classes, top_k=3)


def test_the_model_directory_serves_from_its_own_code_dir(trained_model_dir, tmp_path):
    """SageMaker imports code/inference.py with only code/ on sys.path: everything it imports is there."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import inference; "
        "model = inference.model_fn(sys.argv[2]); print(len(model.classes))"
    )
    code_dir = trained_model_dir / "code"
    assert {path.name for path in code_dir.glob("*.py")} == set(serving_contract.SERVING_CODE)
    completed = subprocess.run(
        [sys.executable, "-I", "-c", script, str(code_dir), str(trained_model_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, inference.RUNTIME_ENV: "torch", "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["4"]


def test_predictor_contract(torch_predictor):
    batch = np.stack([preprocess(image_in_mode("RGB"), SIZE)] * 3)
    probabilities = torch_predictor.predict(batch)
    assert probabilities.shape == (3, 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert torch_predictor.classes[0] == "001.Affenpinscher"


def test_runtime_selection(trained_model_dir, tmp_path, monkeypatch):
    without_onnx = tmp_path / "model"
    shutil.copytree(trained_model_dir, without_onnx, ignore=shutil.ignore_patterns("*.onnx"))
    monkeypatch.setenv(inference.RUNTIME_ENV, "auto")
    assert model_fn(str(without_onnx)).runtime == "torch-fp32"
    monkeypatch.setenv(inference.RUNTIME_ENV, "onnx")
    with pytest.raises(FileNotFoundError, match=r"model\.int8\.onnx"):
        model_fn(str(without_onnx))
    monkeypatch.setenv(inference.RUNTIME_ENV, "tensorrt")
    with pytest.raises(ValueError, match="auto, openvino, onnx or torch"):
        model_fn(str(without_onnx))
    if (trained_model_dir / inference.ONNX_MODEL_FILE).exists():
        monkeypatch.setenv(inference.RUNTIME_ENV, "auto")
        assert model_fn(str(trained_model_dir)).runtime == "openvino-int8"


# ---------------------------------------------------------------- bad requests


def big_png(width: int, height: int) -> bytes:
    return encode(Image.new("1", (width, height)))  # 1-bit and blank: compresses to a few KB


GOOD_IMAGE = base64.b64encode(encode(gradient_image(40, 40))).decode()

BAD_REQUESTS = [
    ("text/plain", b"hello", 415),
    ("", b"\xff\xd8", 415),
    ("image/jpeg", b"", 400),
    ("image/jpeg", b"definitely not an image", 400),
    ("image/png", encode(gradient_image(), "JPEG")[:40], 400),
    ("application/json", "{not json", 400),
    ("application/json", b"\xff\xfe\x00", 400),
    ("application/json", "[1, 2]", 400),
    ("application/json", json.dumps({}), 400),
    ("application/json", json.dumps({"image": 12}), 400),
    ("application/json", json.dumps({"image": "***"}), 400),
    ("application/json", json.dumps({"image": base64.b64encode(b"text").decode()}), 400),
    ("application/json", json.dumps({"image": GOOD_IMAGE, "top_k": 0}), 400),
    ("application/json", json.dumps({"image": GOOD_IMAGE, "top_k": 21}), 400),
    ("application/json", json.dumps({"image": GOOD_IMAGE, "top_k": "3"}), 400),
    ("application/json", json.dumps({"image": GOOD_IMAGE, "top_k": True}), 400),
    ("image/jpeg", b"\xff" * (inference.MAX_BODY_BYTES + 1), 413),
    ("image/png", partial(big_png, 12_000, 12_000), 413),  # 144 MP: Pillow's DecompressionBombError
    ("image/png", partial(big_png, 9_000, 5_000), 413),  # 45 MP: DecompressionBombWarning, as an error
    ("image/png", partial(big_png, 10_001, 10), 413),  # absurd side
]


@pytest.mark.parametrize(("content_type", "body", "status"), BAD_REQUESTS)
def test_bad_requests_get_their_status(content_type, body, status):
    body = body() if callable(body) else body  # big images are built only when their case runs
    error = status_of(lambda: input_fn(body, content_type))
    assert error.status_code == status, error.message


def test_truncated_image_is_a_400_at_prediction(torch_predictor):
    complete = encode(gradient_image(200, 200), "JPEG")
    truncated = complete[: len(complete) // 2]
    request = input_fn(truncated, "image/jpeg")  # the header is fine
    assert status_of(lambda: predict_fn(request, torch_predictor)).status_code == 400


def test_unsupported_accept_is_406(torch_predictor):
    request = input_fn(encode(gradient_image()), "image/png")
    prediction = predict_fn(request, torch_predictor)
    assert status_of(lambda: output_fn(prediction, "text/html")).status_code == 406
    assert json.loads(output_fn(prediction, "text/html, application/json;q=0.9"))["predictions"]


def test_error_is_the_toolkit_error_when_available():
    try:
        from sagemaker_inference.errors import BaseInferenceToolkitError
    except ImportError:
        error = InferenceError(400, "bad image")
        assert (error.status_code, error.message, error.phrase) == (400, "bad image", "bad image")
    else:
        assert issubclass(InferenceError, BaseInferenceToolkitError)
