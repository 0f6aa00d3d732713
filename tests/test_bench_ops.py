"""`sdbot bench ops --quick`: a small run through the command line, in its own process (the
bench fills the metrics registry), on SQLite and on PostgreSQL with Redis pinged. Its figures
are real ones: the series it made are in the scraped body, the jobs and files it filled are
the ones purged and forgotten, the terminal write without metrics really counts nothing. No
figure's size is asserted: those are the report's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.ops import Sizes
from bench.ops_hot import _no_metrics
from bench.ops_http import ERROR_STATUSES, ROUTES
from bot.settings import Settings
from common import metrics
from storage.models import JobStatus
from storage.repositories import repositories
from tests.conftest import REDIS_URL, require_service
from tests.test_cli import sdbot
from tests.test_storage import new_job

QUICK = Sizes.quick()


def _run(settings: Settings, *args: str) -> dict[str, Any]:
    require_service("Redis", REDIS_URL, 6379)
    result = sdbot(settings, "bench", "ops", "--quick", "--redis-url", REDIS_URL, "--json", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _check(report: dict[str, Any], database: str) -> None:
    assert report["database"].startswith(database)
    assert report["redis"] is True
    assert report["cores"] >= 1
    scrape = report["scrape"]
    # Every route × status the bench made is in the body Prometheus got, and far more besides.
    assert scrape["route_series"] == ROUTES * len(ERROR_STATUSES)
    assert scrape["series"] > scrape["route_series"] + len(metrics.KINDS) * len(metrics.OUTCOMES)
    assert scrape["body_bytes"] > 0
    assert scrape["scrapes"] == QUICK.scrapes
    assert scrape["readyz_checks"] == ["database", "redis"]
    assert scrape["readyz_status"] == 200
    for name in ("scrape", "render", "readyz"):
        assert 0 < scrape[f"{name}_p50_ms"] <= scrape[f"{name}_p99_ms"]
    hot = report["hot"]
    assert set(hot["call_us"]) == {
        "counter_2_labels",
        "counter_1_label",
        "histogram_1_label",
        "histogram_no_label",
    }
    assert all(value > 0 for value in hot["call_us"].values())
    assert hot["writes"] == QUICK.writes
    assert hot["write_ms_with"] > 0
    assert hot["write_ms_without"] > 0
    assert hot["log_us_text"] > 0
    assert hot["log_us_json"] > 0
    purge = report["purge"]
    assert purge["jobs"] == QUICK.jobs  # every expired job, none of the others
    assert purge["images"] == 4 * QUICK.jobs  # every file on disk
    assert purge["transactions"] >= QUICK.jobs // 500 + 1  # a batch of 500 a transaction
    assert purge["longest_transaction_ms"] >= purge["median_transaction_ms"] > 0
    assert 0 < purge["files_s"] < purge["seconds"]
    assert purge["jobs_per_s"] == pytest.approx(purge["jobs"] / purge["seconds"])
    forget = report["forget"]
    assert report["member_jobs"] == QUICK.member_jobs
    assert forget["jobs"] == QUICK.member_jobs  # the member's, not the 450 others
    assert forget["images"] == 4 * QUICK.member_jobs
    assert forget["longest_transaction_ms"] > 0


def test_a_quick_run_on_sqlite(settings: Settings) -> None:
    report = _run(settings)
    _check(report, "sqlite")
    assert report["sizes"] == {
        "jobs": QUICK.jobs,
        "member_jobs": QUICK.member_jobs,
        "scrapes": QUICK.scrapes,
        "metric_calls": QUICK.metric_calls,
        "writes": QUICK.writes,
    }


def test_a_quick_run_on_postgresql_then_a_full_database_is_refused(
    settings: Settings, postgres_url: str
) -> None:
    report = _run(settings, "--postgres", postgres_url)
    _check(report, "postgresql")
    again = sdbot(settings, "bench", "ops", "--quick", "--postgres", postgres_url)
    assert again.returncode != 0
    assert "already holds jobs" in again.stderr


def test_bad_sizes_are_refused_by_name(settings: Settings) -> None:
    result = sdbot(settings, "bench", "ops", "--jobs", "10", "--member-jobs", "11")
    assert result.returncode != 0
    assert "--member-jobs" in result.stderr
    assert "11" in result.stderr


async def test_without_metrics_the_terminal_write_counts_nothing(sessions: Any) -> None:
    """The comparison's other side really has no metrics (and this side has them)."""
    storage = repositories(sessions)
    counter = metrics.JOBS.labels("imagine", "succeeded")
    first = await storage.audit.create_job(new_job())
    second = await storage.audit.create_job(new_job())
    before = counter._value.get()
    with _no_metrics():
        await storage.audit.record_outcome(first, JobStatus.SUCCEEDED)
    assert counter._value.get() == before
    await storage.audit.record_outcome(second, JobStatus.SUCCEEDED)
    assert counter._value.get() == before + 1
