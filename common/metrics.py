"""Every Prometheus metric sdbot exposes, in one place, on prometheus-client's default registry.

Each process (`sdbot run`, every `sdbot worker`) serves the ones it moves on its own metrics port
(``bot.ops.server``); Prometheus adds which process by its target labels. Label values are
bounded sets (kinds, outcomes, stages, rule kinds, model names from the operator's catalog, API
routes as templates): never a guild, a member, a job id or a prompt, which go to the logs.

Where each moves:

- the bot process (storage's two terminal writes, admission, Discord): ``JOBS``, ``STAGE``
  (queue_wait, posting, end_to_end), ``PROMPT_BLOCKS``, ``REFUSALS``, ``QUEUE_JOBS``,
  ``DISCORD_*``, ``PURGED_JOBS``;
- the process that runs the model (the bot's own worker, or `sdbot worker`): ``STAGE``
  (diffusion, safety, watermark, model_load), ``IMAGES``, ``STANDARD_IMAGES``,
  ``DEVICE_SECONDS``, ``IMAGES_FLAGGED``, ``WORKER_RESTARTS``, ``WORKER_TAKEOVERS``,
  ``BATCHES``;
- both: ``READY``, ``PRICE_PER_DEVICE_HOUR``, ``BUILD_INFO`` and the process and GPU gauges
  (``bot.ops.system``).

The counters with fixed label sets (and every stage) exist at 0 from import on
(:func:`_precreate`), so that a restart's first failure shows in rate() and increase().

Cost per image is device-seconds per image: ``rate(sdbot_device_seconds_total[5m]) /
rate(sdbot_images_total[5m])``; in money, each instance's device-seconds times its own price,
``sum(rate(sdbot_device_seconds_total[1h]) * on(job, instance) group_left
sdbot_price_per_device_hour) / 3600 / sum(rate(sdbot_images_total[1h]))``. Device-seconds count
every pipeline call, drawn, cancelled or failed.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

# No ``*_created`` series beside every counter and histogram: they double the series a scrape
# carries and nothing here reads them (rate() and increase() handle restarts by themselves).
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it untyped

# From 5 ms (a safety check) to 10 minutes (a long queue wait or a slow SDXL upscale on CPU).
SECONDS_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

OUTCOMES = ("succeeded", "blocked", "refused", "failed", "cancelled")
KINDS = ("imagine", "reroll", "upscale", "vary", "zoom", "edit", "describe")
# Why a request was refused (bot.imagine.outcomes.Refusal), which rule blocked a prompt and in
# which layer (moderation.reasons), why records were purged (storage.models.PurgeReason): named
# here too because common imports nothing of ours; tests/test_metrics_registry.py ties each list
# to its source, so a new value there fails a test rather than go missing from a fresh /metrics.
REFUSAL_REASONS = ("rate", "banned", "paused", "channel", "direct", "model", "input")
BLOCK_RULES = (
    "minors", "term", "pattern", "negative_clothing", "clothing_removed", "classifier", "gore",
    "other",
)  # fmt: skip
BLOCK_LAYERS = ("default", "profanity", "guild", "always")
PURGE_REASONS = ("retention", "forget")
# queue_wait: recorded → first start; end_to_end: recorded → terminal status (queued jobs only);
# posting: the answer's Discord calls; the rest per job, as the worker measured them.
STAGES = (
    "queue_wait",
    "model_load",
    "diffusion",
    "safety",
    "watermark",
    "posting",
    "end_to_end",
)

JOBS = Counter(
    "sdbot_jobs",
    "Requests that reached their terminal status, by kind and outcome",
    ["kind", "outcome"],
)
STAGE = Histogram(
    "sdbot_stage_seconds",
    "Time a job spent in each stage (see STAGES)",
    ["stage"],
    buckets=SECONDS_BUCKETS,
)
PROMPT_BLOCKS = Counter(
    "sdbot_prompt_blocks",
    "Prompts blocked, by the rule that decided (minors, term, pattern, negative_clothing, "
    "clothing_removed, classifier, gore, other) and its layer (default, profanity, guild, always)",
    ["rule", "layer"],
)
REFUSALS = Counter(
    "sdbot_refusals",
    "Requests refused before the queue (a limit, a ban, a pause, a picture), by reason",
    ["reason"],
)
QUEUE_JOBS = Gauge("sdbot_queue_jobs", "Jobs in the queue, by state (queued, running)", ["state"])

IMAGES = Counter("sdbot_images", "Images drawn (each variant one)", ["model"])
STANDARD_IMAGES = Counter(
    "sdbot_standard_images",
    "Images drawn in standard images (512x512, 20 steps: the rate limits' unit)",
    ["model"],
)
DEVICE_SECONDS = Counter(
    "sdbot_device_seconds",
    "Seconds the device spent drawing (each batch's pipeline call once)",
    ["model"],
)
IMAGES_FLAGGED = Counter("sdbot_images_flagged", "Images the NSFW check flagged", ["model"])
BATCHES = Counter("sdbot_batches", "Pipeline calls (a batch of jobs of one shape)", ["model"])
WORKER_RESTARTS = Counter(
    "sdbot_worker_restarts", "Times the model process was started again after it died or stalled"
)
WORKER_TAKEOVERS = Counter(
    "sdbot_worker_takeovers", "Jobs this worker took over from a Redis worker that went silent"
)

DISCORD_ACK = Histogram(
    "sdbot_discord_ack_seconds",
    "From an interaction's arrival to the end of its first answer, accepted or refused as too "
    "late (the 3 s rule)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0),
)
DISCORD_ACKS_EXPIRED = Counter(
    "sdbot_discord_acks_expired",
    "Interactions whose first answer Discord refused as too late (404, code 10062: the member "
    "saw 'The application did not respond')",
)
DISCORD_API_ERRORS = Counter(
    "sdbot_discord_api_errors",
    "Discord HTTP API calls that failed, by method, route template and status (0: no answer)",
    ["method", "route", "status"],
)

PURGED_JOBS = Counter(
    "sdbot_purged_jobs",
    "Audit records whose prompts and images were purged, by why (retention, forget)",
    ["reason"],
)
READY = Gauge(
    "sdbot_ready", "1 when a readiness check passes, 0 when it fails (see /readyz)", ["check"]
)
PRICE_PER_DEVICE_HOUR = Gauge(
    "sdbot_price_per_device_hour", "What an hour of the device costs (SDBOT_PRICE_PER_DEVICE_HOUR)"
)
BUILD_INFO = Info("sdbot_build", "sdbot's version and this process's role")


def _precreate() -> None:
    """Every label set of the counters and stages above, at 0 from the process's start: a
    series born with its first event has no earlier sample, so rate() and increase() miss that
    first failure after a restart, and a ratio (failed jobs over all jobs) has no denominator.
    The model-labelled ones are the operator's models: :func:`precreate_models`."""
    for kind in KINDS:
        for outcome in OUTCOMES:
            JOBS.labels(kind, outcome)
    for reason in REFUSAL_REASONS:
        REFUSALS.labels(reason)
    for rule in BLOCK_RULES:
        for layer in BLOCK_LAYERS:
            PROMPT_BLOCKS.labels(rule, layer)
    for stage in STAGES:
        STAGE.labels(stage)
    for reason in PURGE_REASONS:
        PURGED_JOBS.labels(reason)


_precreate()


def precreate_models(models: Iterable[str]) -> None:
    """The model-labelled counters at 0 for each of the operator's models, from the start of a
    process that runs them (``bot.ops.server``): a series born with a worker's first batch
    has no earlier sample, and a rate over it reads 0 until its second batch."""
    for model in models:
        for counter in (IMAGES, STANDARD_IMAGES, DEVICE_SECONDS, IMAGES_FLAGGED, BATCHES):
            counter.labels(model)
