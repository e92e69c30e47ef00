"""Local time of the city: Vietnam keeps +07:00 all year."""

from __future__ import annotations

from datetime import timedelta, timezone

VN = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
