"""``ioc env``: environmental indices of CSV files, no database needed (see ``cli`` and docs/ENVIRONMENT.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioc.settings import Settings


def cmd_env_aqi(_settings: Settings, args: argparse.Namespace) -> int:
    from .cli import run_aqi

    daily = args.daily is not None
    return run_aqi(args.daily if daily else args.hourly, daily=daily, output=args.output)


def cmd_env_wqi(_settings: Settings, args: argparse.Namespace) -> int:
    from .cli import run_wqi

    return run_wqi(
        args.file,
        output=args.output,
        weighted=args.weighted,
        pesticides=args.pesticides,
        heavy_metals=args.heavy_metals,
    )


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = sub.add_parser(
        "env",
        help="chỉ số môi trường VN_AQI, VN_WQI từ tệp CSV / environmental indices of CSV files",
        description="Tính VN_AQI (QĐ 1459/QĐ-TCMT) và VN_WQI (QĐ 1460/QĐ-TCMT) từ tệp CSV; không cần cơ sở dữ liệu.",
    )
    env_sub = env.add_subparsers(dest="env_command", required=True, metavar="{aqi,wqi}")

    aqi = env_sub.add_parser(
        "aqi",
        help="VN_AQI giờ hoặc ngày / hourly or daily VN_AQI",
        description=(
            "Đọc CSV station_id,time,pm25,pm10,o3,no2,so2,co (µg/m³, CO cũng µg/m³; ô trống = thiếu; time ISO 8601 "
            "có độ lệch UTC, là cuối giờ trung bình) và in station_id,time,aqi,dominant (--hourly) hoặc "
            "station_id,date,aqi,dominant (--daily, ngày theo giờ Việt Nam 01:00 … 00:00 hôm sau)."
        ),
    )
    mode = aqi.add_mutually_exclusive_group(required=True)
    mode.add_argument("--hourly", metavar="FILE", help="AQI giờ (NowCast cho bụi); '-' = stdin")
    mode.add_argument("--daily", metavar="FILE", help="AQI ngày; '-' = stdin")
    aqi.add_argument("--output", "-o", metavar="FILE", help="ghi ra tệp thay vì stdout / write to a file")
    aqi.set_defaults(func=cmd_env_aqi)

    wqi = env_sub.add_parser(
        "wqi",
        help="VN_WQI của mẫu nước / VN_WQI of water samples",
        description=(
            "Đọc CSV station_id,time và các cột thông số (ph, temp °C, do mg/L hoặc do_pct %, bod5, cod, toc, nh4, "
            "no3, no2, po4 mg/L, coliform, ecoli MPN/100 mL, as, cd, pb, cr6, cu, zn, hg mg/L, aldrin, bhc, "
            "dieldrin, ddts, heptachlor µg/L) và in station_id,time,wqi,reason."
        ),
    )
    wqi.add_argument("file", metavar="FILE", help="tệp CSV; '-' = stdin")
    wqi.add_argument("--output", "-o", metavar="FILE", help="ghi ra tệp thay vì stdout / write to a file")
    wqi.add_argument("--weighted", action="store_true", help="công thức 5: trọng số nhóm IV = 2 (organic pollution)")
    wqi.add_argument("--pesticides", action="store_true", help="bắt buộc nhóm II (thuỷ vực chịu tác động thuốc BVTV)")
    wqi.add_argument("--heavy-metals", action="store_true", help="bắt buộc nhóm III (kim loại nặng)")
    wqi.set_defaults(func=cmd_env_wqi)
