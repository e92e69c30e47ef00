"""Settings: safe defaults, environment variables, and the production secret-key rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc.app import create_app
from ioc.settings import DEV_SECRET_KEY, Settings, SettingsError


def test_defaults_are_development_on_sqlite_in_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("IOC_ENV", "IOC_DATABASE_URL", "IOC_VAR_DIR", "IOC_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings()
    assert settings.env == "development"
    assert settings.database_url == f"sqlite:///{(Path('var') / 'ioc.db').resolve()}"
    assert settings.is_sqlite
    settings.check_for_start()  # development accepts the development key


def test_environment_variables_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("IOC_MAP__TILE_URL", "https://tiles.example/{z}/{x}/{y}.png")
    monkeypatch.setenv("IOC_MQTT__URL", "mqtt://127.0.0.1:1883")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.map.tile_url.startswith("https://tiles.example/")
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert not settings.is_sqlite


@pytest.mark.parametrize("secret", ["", DEV_SECRET_KEY, "short-but-not-default"])
def test_production_refuses_a_missing_default_or_weak_secret(secret: str) -> None:
    settings = Settings(env="production", secret_key=secret)
    with pytest.raises(SettingsError, match="IOC_SECRET_KEY"):
        settings.check_for_start()
    with pytest.raises(SettingsError):
        create_app(settings)


def test_production_starts_with_a_real_secret(tmp_path: Path) -> None:
    settings = Settings(env="production", secret_key="x" * 48, var_dir=tmp_path)
    settings.check_for_start()
    assert create_app(settings).state.settings.env == "production"


def test_create_app_does_no_io(tmp_path: Path) -> None:
    # Nothing listens on port 1 and the SQLite file is never created: building the app must not connect.
    create_app(Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", var_dir=tmp_path))
    sqlite_file = tmp_path / "never.db"
    create_app(Settings(database_url=f"sqlite:///{sqlite_file}", var_dir=tmp_path))
    assert not sqlite_file.exists()


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_ENV", "staging")
    with pytest.raises(ValueError, match="env"):
        Settings()
