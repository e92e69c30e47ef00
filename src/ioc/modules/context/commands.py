"""Commands of the context module for the ``ioc`` CLI: ``ioc simulate``."""

from __future__ import annotations

import argparse
from typing import Any

from ioc.settings import Settings


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from .simulate import main

    return main(args, mqtt_url=settings.mqtt.url, mqtt_prefix=settings.mqtt.topic_prefix, base_url=settings.base_url)


def add_commands(sub: Any) -> None:
    """Add ``simulate`` to the CLI's subcommands."""
    from .simulate import add_arguments

    parser = sub.add_parser(
        "simulate",
        help="mô phỏng thiết bị của bản demo / simulate the demo's devices (MQTT or HTTP)",
        description="Gửi dữ liệu đo giả lập của các thiết bị demo (trạm không khí, mực nước, đo mưa, đèn đường). "
        "Simulated telemetry of the demo's devices, with daily patterns and optional episodes.",
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_simulate)
