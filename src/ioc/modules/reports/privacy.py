"""Personal data (Law 91/2025/QH15): masking, redaction of public text, photo stripping, rate limits.

* Phones are shown masked (``090****567``) except through the audited reveal.
* Free text shown to the public has phone numbers and e-mail addresses blanked, in case a
  reporter typed their own into the description.
* Photos are decoded and re-encoded by Pillow from pixels only: EXIF (GPS position, camera
  serial, time) and every other metadata block is dropped; orientation is applied first.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from ioc.core.problems import Problem

_PHONE = re.compile(r"(?<!\d)(?:\+?84|0)(?:[\s.\-]?\d){8,10}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Largest image accepted, in pixels (decompression bombs are refused).
MAX_PIXELS = 40_000_000
#: Longest side kept: larger photos are scaled down (smaller, and enough for any screen).
MAX_SIDE = 2560


def mask_phone(phone: str | None) -> str | None:
    """``0905123567`` → ``090****567``."""
    if not phone:
        return phone
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 6:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 6) + digits[-3:]


def mask_email(email: str | None) -> str | None:
    """``nguyen.van.a@gmail.com`` → ``n***@gmail.com``."""
    if not email or "@" not in email:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_name(name: str | None) -> str | None:
    """``Nguyễn Văn An`` → ``N. V. An`` (enough for an officer's greeting, not an identity)."""
    if not name:
        return name
    parts = name.split()
    if len(parts) == 1:
        return parts[0][:1] + "."
    return " ".join(p[:1] + "." for p in parts[:-1]) + " " + parts[-1]


def redact(text: str | None) -> str | None:
    """Public text with phone numbers and e-mail addresses blanked."""
    if not text:
        return text
    return _EMAIL.sub("[email ẩn]", _PHONE.sub("[số điện thoại ẩn]", text))


def client_hash(secret: str, client: str) -> str:
    """A keyed digest of a client identifier (IP, key id): links abuse without storing the IP."""
    return hmac.new(secret.encode(), client.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    content_type: str
    width: int
    height: int


def strip_photo(raw: bytes, max_bytes: int) -> CleanPhoto:
    """Decode, orient, downscale and re-encode as JPEG without any metadata; 4xx if not an image."""
    if len(raw) > max_bytes:
        raise Problem(
            413,
            f"Ảnh vượt quá {max_bytes // (1024 * 1024)} MB (photo too large).",
            code="photo-too-large",
        )
    if not raw:
        raise Problem(422, "Tệp ảnh rỗng (empty photo).", code="bad-photo")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            if probe.width * probe.height > MAX_PIXELS:
                raise Problem(422, "Ảnh quá nhiều điểm ảnh (image too large).", code="bad-photo")
            probe.verify()
        with Image.open(io.BytesIO(raw)) as opened:
            img = ImageOps.exif_transpose(opened).convert("RGB")
            img.thumbnail((MAX_SIDE, MAX_SIDE))
            out = io.BytesIO()
            # A new image built from the pixels alone: no exif=, no icc_profile=, no comments.
            clean = Image.new("RGB", img.size)
            clean.paste(img)
            clean.save(out, format="JPEG", quality=85, optimize=True)
            return CleanPhoto(out.getvalue(), "image/jpeg", clean.width, clean.height)
    except Problem:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise Problem(422, "Tệp không phải ảnh hợp lệ (not a valid image).", code="bad-photo") from exc


class RateLimiter:
    """At most ``per_hour`` events per client in any hour, in this process's memory."""

    WINDOW = 3600.0
    PRUNE_ABOVE = 50_000

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > self.PRUNE_ABOVE:
                for key in [k for k, v in self._hits.items() if not v or now - v[-1] > self.WINDOW]:
                    del self._hits[key]
            hits = self._hits.setdefault(client, deque())
            while hits and now - hits[0] > self.WINDOW:
                hits.popleft()
            if len(hits) >= self.per_hour:
                wait = int(self.WINDOW - (now - hits[0])) + 1
                raise Problem(
                    429,
                    f"Bạn đã gửi quá nhiều phản ánh; thử lại sau {wait} giây (too many reports).",
                    code="too-many-reports",
                    headers={"Retry-After": str(wait)},
                )
            hits.append(now)
