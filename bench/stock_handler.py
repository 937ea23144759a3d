"""The stock serving path we are measured against: the original project's handler.

Eager fp32 ResNet50 (NCHW, ``torch.no_grad``) behind torchvision transforms
on a fully decoded PIL image, with the same weights as ours.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from inference import IMAGENET_MEAN, IMAGENET_STD, read_model_config
from PIL import Image
from torchvision import transforms
from torchvision.models import resnet50


@dataclass
class StockModel:
    network: torch.nn.Module
    classes: list[str]
    transform: transforms.Compose


def model_fn(model_dir: str | Path) -> StockModel:
    config = read_model_config(model_dir)
    network = resnet50(weights=None, num_classes=int(config["num_classes"]))
    network.load_state_dict(torch.load(Path(model_dir) / "model.pth", map_location="cpu", weights_only=True))
    image_size = int(config["image_size"])
    transform = transforms.Compose(
        [
            transforms.Resize(round(image_size * 256 / 224)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return StockModel(network.eval(), list(config["classes"]), transform)


def input_fn(request_body: bytes, content_type: str) -> Image.Image:
    return Image.open(io.BytesIO(request_body)).convert("RGB")


def predict_fn(image: Image.Image, model: StockModel) -> torch.Tensor:
    batch = model.transform(image).unsqueeze(0)
    with torch.no_grad():
        return torch.softmax(model.network(batch), dim=1)[0]


def output_fn(probabilities: torch.Tensor, accept: str) -> str:
    values, indices = torch.topk(probabilities, k=min(5, probabilities.numel()))
    return json.dumps(
        {
            "predictions": [
                {"index": int(i), "probability": float(v)} for v, i in zip(values, indices, strict=True)
            ]
        }
    )
