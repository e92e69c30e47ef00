"""Which PostgreSQL server ``make bench`` measures its PostgreSQL legs on (bench/__init__.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import bench
import pytest

from tests.conftest import PG_URL, free_port


@pytest.fixture(autouse=True)
def _decided_anew() -> Iterator[None]:
    bench.postgres_leg.cache_clear()
    bench._say_once.cache_clear()
    yield
    bench.postgres_leg.cache_clear()
    bench._say_once.cache_clear()


def _closed_port_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/ioc_bench"


@pytest.mark.skipif(not PG_URL, reason="needs IOC_TEST_DATABASE_URL")
def test_without_a_setting_the_local_server_is_measured_when_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOC_BENCH_DATABASE_URL", raising=False)
    local = PG_URL.rsplit("/", 1)[0] + "/ioc_bench"
    monkeypatch.setattr(bench, "DEFAULT_POSTGRES_URL", local)
    assert bench.postgres_url() == local
    assert bench.postgres_leg()[1].startswith("PostgreSQL leg on ")


def test_without_a_setting_and_no_local_server_the_leg_is_skipped_and_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IOC_BENCH_DATABASE_URL", raising=False)
    monkeypatch.setattr(bench, "DEFAULT_POSTGRES_URL", _closed_port_url())
    assert bench.postgres_url() is None
    assert bench.postgres_url() is None
    err = capsys.readouterr().err
    assert err.count("!! PostgreSQL skipped: none at postgresql+psycopg://postgres@127.0.0.1:") == 1  # once a run
    assert "PostgreSQL does not answer" in err and "set IOC_BENCH_DATABASE_URL" in err
    assert bench.postgres_leg()[1].startswith("skipped: none at")


def test_an_empty_setting_skips_the_leg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_BENCH_DATABASE_URL", "")
    assert bench.postgres_url() is None
    assert bench.postgres_leg()[1] == "skipped: IOC_BENCH_DATABASE_URL is set empty"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:{port}/ioc_bench", "PostgreSQL does not answer"),
        ("sqlite:///var/bench.db", "not a PostgreSQL URL (sqlite)"),
        ("no url at all", "not a database URL"),
    ],
)
def test_a_server_that_is_named_but_cannot_be_used_stops_the_run(
    monkeypatch: pytest.MonkeyPatch, url: str, said: str
) -> None:
    """A server asked for by name is measured or the run stops: never a silent SQLite-only run."""
    monkeypatch.setenv("IOC_BENCH_DATABASE_URL", url.format(port=free_port()))
    with pytest.raises(SystemExit, match=re.escape(said)):
        bench.postgres_url()
