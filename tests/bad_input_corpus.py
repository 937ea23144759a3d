"""Malformed requests for the classifier, as Lambda events and as raw endpoint bodies.

Two event shapes reach ``lambda_handler``:

* direct: ``{"image": <base64>, "content_type": "image/jpeg", "top_k": 3}`` (what the smoke
  test sends);
* API Gateway proxy (REST, payload 1.0): ``{"httpMethod": "POST", "headers": {...}, "body":
  <text>, "isBase64Encoded": bool, "queryStringParameters": {...}}``, the body being either a
  base64 image (``isBase64Encoded``) or the JSON document of the direct shape.

Every case here must be answered 4xx with a message: none is a request a client could
expect to succeed. ``endpoint_cases`` are raw InvokeEndpoint bodies for the same faults.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image

OVER_6_MB = 6 * 1024 * 1024 + 1


@dataclass(frozen=True)
class LambdaCase:
    name: str
    event: dict[str, Any] | bytes  # bytes: sent to Invoke as the raw payload


@dataclass(frozen=True)
class EndpointCase:
    name: str
    body: bytes
    content_type: str


# ------------------------------------------------------------------------ images
def good_jpeg(size: int = 48, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def encoded(image: bytes, kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image)).save(buffer, kind)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes = b"", bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` whatever the data holds."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 30_000) -> bytes:
    """A real, complete 1-bit PNG of ``side`` x ``side`` blank pixels: ~100 KB that inflates to
    ``side**2 / 8`` bytes (112 MB at 30000) and to 2.7 GB as RGB."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte 0, then zero bits
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row) for _ in range(side)]
    chunks.append(compressor.flush())
    return png_claiming(side, side, b"".join(chunks), bit_depth=1, colour=0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------------ the corpus
def bad_images() -> list[tuple[str, bytes]]:
    """Bytes that are not a usable image, each sent as image/jpeg."""
    jpeg = good_jpeg()
    rng = random.Random(7)
    return [
        ("truncated-jpeg-header", jpeg[:20]),
        ("truncated-jpeg-half", jpeg[: len(jpeg) // 2]),
        ("jpeg-soi-only", b"\xff\xd8"),
        ("random-bytes", rng.randbytes(4096)),
        ("zero-bytes", b"\x00" * 2048),
        ("text-as-image", b"this is a photo of a dog, honestly"),
        ("html-as-image", b"<html><body><img src=dog.jpg></body></html>"),
        ("png-claiming-100000x100000", png_claiming(100_000, 100_000)),
        ("png-claiming-0x0", png_claiming(0, 0)),
        ("png-bad-crc", png_claiming(64, 64)[:-4] + b"\x00\x00\x00\x00"),
        ("png-decompression-bomb", png_bomb()),
        ("gif-header-only", b"GIF89a\x10\x00\x10\x00"),
        ("pdf-as-image", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"),
        ("zip-as-image", b"PK\x03\x04" + rng.randbytes(200)),
    ]


def direct_event(image: Any = None, content_type: Any = "image/jpeg", top_k: Any = 3, **extra: Any) -> dict:
    event = {"image": image, "content_type": content_type, "top_k": top_k, **extra}
    return {key: value for key, value in event.items() if value is not _MISSING}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()


def proxy_event(body: Any, content_type: str | None, base64_encoded: bool, query: dict | None = None) -> dict:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return {
        "resource": "/classify",
        "path": "/classify",
        "httpMethod": "POST",
        "headers": headers,
        "queryStringParameters": query,
        "body": body,
        "isBase64Encoded": base64_encoded,
        "requestContext": {"stage": "prod", "httpMethod": "POST", "path": "/prod/classify"},
    }


def lambda_cases() -> list[LambdaCase]:
    jpeg = good_jpeg()
    good = b64(jpeg)
    cases = [LambdaCase(f"direct/{name}", direct_event(b64(data))) for name, data in bad_images()]
    cases += [
        # content types
        LambdaCase(  # content_type defaults to image/jpeg: these bytes are not one
            "direct/content-type-missing-not-jpeg",
            direct_event(b64(b"plain text, no image"), content_type=_MISSING),
        ),
        LambdaCase("direct/content-type-malformed", direct_event(good, content_type="image/")),
        LambdaCase("direct/content-type-text", direct_event(good, content_type="text/plain")),
        LambdaCase(
            "direct/content-type-gif", direct_event(b64(encoded(jpeg, "GIF")), content_type="image/gif")
        ),
        LambdaCase(
            "direct/content-type-bmp", direct_event(b64(encoded(jpeg, "BMP")), content_type="image/bmp")
        ),
        LambdaCase(
            "direct/content-type-tiff", direct_event(b64(encoded(jpeg, "TIFF")), content_type="image/tiff")
        ),
        LambdaCase("direct/content-type-int", direct_event(good, content_type=42)),
        LambdaCase("direct/content-type-unicode", direct_event(good, content_type="image/jpég\u202e")),
        # the image field
        LambdaCase("direct/image-missing", direct_event(_MISSING)),
        LambdaCase("direct/image-null", direct_event(None)),
        LambdaCase("direct/image-empty", direct_event("")),
        LambdaCase("direct/image-int", direct_event(12345)),
        LambdaCase("direct/image-list", direct_event([good])),
        LambdaCase("direct/image-object", direct_event({"data": good})),
        LambdaCase("direct/image-bad-base64", direct_event("this is not base64!!!")),
        LambdaCase("direct/image-base64-bad-padding", direct_event(good[:-3])),
        LambdaCase("direct/image-unicode-junk", direct_event("🐶\u0000\ufffd\ud7ff犬" * 20)),
        LambdaCase("direct/image-base64-of-nothing", direct_event("====")),
        # top_k
        LambdaCase("direct/top-k-string", direct_event(good, top_k="three")),
        LambdaCase("direct/top-k-negative", direct_event(good, top_k=-1)),
        LambdaCase("direct/top-k-zero", direct_event(good, top_k=0)),
        LambdaCase("direct/top-k-huge", direct_event(good, top_k=10**12)),
        LambdaCase("direct/top-k-float", direct_event(good, top_k=2.5)),
        LambdaCase("direct/top-k-bool", direct_event(good, top_k=True)),
        LambdaCase("direct/top-k-list", direct_event(good, top_k=[3])),
        # whole events
        LambdaCase("direct/empty-object", {}),
        LambdaCase("raw/json-list", b"[1, 2, 3]"),
        LambdaCase("raw/json-string", b'"just a string"'),
        LambdaCase("raw/json-number", b"42"),
        LambdaCase("raw/json-null", b"null"),
        # API Gateway proxy events
        LambdaCase("proxy/raw-jpeg-ok-but-truncated", proxy_event(b64(jpeg[:30]), "image/jpeg", True)),
        LambdaCase("proxy/body-null", proxy_event(None, "image/jpeg", True)),
        LambdaCase("proxy/body-empty", proxy_event("", "image/jpeg", True)),
        LambdaCase("proxy/body-bad-base64", proxy_event("%%% not base64 %%%", "image/jpeg", True)),
        LambdaCase("proxy/content-type-missing", proxy_event(good, None, True)),
        LambdaCase("proxy/content-type-form", proxy_event(good, "application/x-www-form-urlencoded", True)),
        LambdaCase("proxy/json-invalid", proxy_event('{"image": "abc", ', "application/json", False)),
        LambdaCase("proxy/json-not-object", proxy_event("[1,2]", "application/json", False)),
        LambdaCase("proxy/json-image-int", proxy_event(json.dumps({"image": 7}), "application/json", False)),
        LambdaCase(
            "proxy/json-top-k-string",
            proxy_event(json.dumps({"image": good, "top_k": "five"}), "application/json", False),
        ),
        LambdaCase(
            "proxy/query-top-k-garbage", proxy_event(good, "image/jpeg", True, query={"top_k": "lots"})
        ),
        LambdaCase("proxy/text-body-as-image", proxy_event("a dog, described in words", "image/jpeg", False)),
        LambdaCase(
            "proxy/unicode-json",
            proxy_event(
                json.dumps({"image": "\u0000\u202e🐕"}, ensure_ascii=False), "application/json", False
            ),
        ),
        # the leading bytes are not the signature the content type names (checked at the edge)
        LambdaCase("direct/png-labelled-jpeg", direct_event(b64(encoded(jpeg, "PNG")))),
        LambdaCase("direct/jpeg-labelled-png", direct_event(good, content_type="image/png")),
        LambdaCase(
            "direct/png-no-content-type", direct_event(b64(encoded(jpeg, "PNG")), content_type=_MISSING)
        ),
        LambdaCase(
            "direct/gif-as-x-image",
            direct_event(b64(encoded(jpeg, "GIF")), content_type="application/x-image"),
        ),
        LambdaCase(
            "direct/webp-as-x-image",
            direct_event(b64(encoded(jpeg, "WEBP")), content_type="application/x-image", top_k=_MISSING),
        ),
        LambdaCase("proxy/png-labelled-jpeg", proxy_event(b64(encoded(jpeg, "PNG")), "image/jpeg", True)),
        # over the limits: the image alone is over the endpoint's 6 MB payload limit, the
        # events over Lambda's 6 MB synchronous payload limit
        LambdaCase("direct/image-over-6mb", direct_event(b64(b"\xff\xd8\xff" + b"\x00" * OVER_6_MB))),
        LambdaCase(
            "proxy/body-over-6mb", proxy_event(b64(b"\xff\xd8\xff" + b"\x00" * OVER_6_MB), "image/jpeg", True)
        ),
    ]
    return cases


def endpoint_cases() -> list[EndpointCase]:
    """Raw InvokeEndpoint bodies: the endpoint itself must answer each with a 4xx."""
    good = good_jpeg()
    cases = [EndpointCase(name, data, "image/jpeg") for name, data in bad_images()]
    cases += [
        EndpointCase("empty-body", b"", "image/jpeg"),
        EndpointCase("content-type-text", good, "text/plain"),
        EndpointCase("content-type-gif", encoded(good, "GIF"), "image/gif"),
        EndpointCase("json-invalid", b'{"image": ', "application/json"),
        EndpointCase("json-image-int", b'{"image": 5}', "application/json"),
        EndpointCase(
            "json-top-k-negative", json.dumps({"image": b64(good), "top_k": -2}).encode(), "application/json"
        ),
        EndpointCase("json-bad-base64", b'{"image": "!!!"}', "application/json"),
        EndpointCase("body-over-6mb", b"\xff\xd8\xff" + b"\x00" * OVER_6_MB, "image/jpeg"),
    ]
    return cases
