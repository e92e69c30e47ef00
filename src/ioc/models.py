"""Import every table definition (core and shipped modules) so the metadata is complete."""

from __future__ import annotations

import importlib
import pkgutil

import ioc.modules


def import_all_models() -> None:
    """Import the core's tables and each module's ``models`` submodule, if it has one."""
    for name in ("audit", "auth", "events", "alarms", "admin_units", "jobs"):
        importlib.import_module(f"ioc.core.{name}")
    for info in pkgutil.iter_modules(ioc.modules.__path__):
        if info.ispkg:
            try:
                importlib.import_module(f"ioc.modules.{info.name}.models")
            except ModuleNotFoundError as exc:
                if exc.name != f"ioc.modules.{info.name}.models":
                    raise
