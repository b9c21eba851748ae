"""The agent's counts and readings as Prometheus families (``prometheus_client``).

``agent_registry`` builds a ``CollectorRegistry`` of the agent's own (not the library's
global one: two agents in one test process, or a reload, never share or clash) holding
``AgentCollector`` and the library's process collector (memory, CPU, file descriptors).
Every family is built at scrape time from ``AgentMetrics`` and the current ``Readings``;
label values come only from the fixed sets of ``labels``. docs/monitoring.md says what each
metric means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .labels import DEPENDENCIES, METHODS, REVALIDATION_OUTCOMES, ROLE_IDS, TASKS, one_of
from .readings import Readings
from .tally import AgentMetrics

PREFIX = "sensor_sso_"

Family = type[CounterMetricFamily] | type[GaugeMetricFamily]


def family(kind: Family, name: str, doc: str, labels: list[str],
           counts: Mapping[Any, float]) -> Metric:
    """``kind`` named ``PREFIX + name`` with one sample per key of ``counts`` (a label value,
    or a tuple of them), in key order."""
    built = kind(PREFIX + name, doc, labels=labels)
    for key, count in sorted(counts.items()):
        built.add_metric([str(v) for v in (key if isinstance(key, tuple) else (key,))], count)
    return built


class AgentCollector:
    """Builds the agent's families at each scrape (a ``prometheus_client`` collector)."""

    def __init__(self, metrics: AgentMetrics, readings: Callable[[], Readings | None],
                 version: str, python: str) -> None:
        self.metrics = metrics
        self.readings = readings
        self.version, self.python = version, python

    def collect(self) -> Iterator[Metric]:
        yield from self._counts()
        now = self.metrics.clock()
        info = GaugeMetricFamily(PREFIX + "build_info", "The running agent's version "
                                 "(always 1).", labels=["version", "python"])
        info.add_metric([self.version, self.python], 1)
        yield info
        yield GaugeMetricFamily(PREFIX + "start_time_seconds", "When the agent process "
                                "started (Unix time).", value=self.metrics.started)
        reading = self.readings()
        if reading is not None:  # None: the first application is still starting
            yield from self._readings(reading, now)

    def _counts(self) -> Iterator[Metric]:
        m = self.metrics
        yield family(CounterMetricFamily, "sign_ins", "Sign-ins finished, by method (sso, "
                     "local) and outcome (succeeded, refused).", ["method", "outcome"],
                     m.sign_ins)
        yield family(CounterMetricFamily, "sign_in_refusals", "Refused sign-ins by method and "
                     "reason code (docs/monitoring.md).", ["method", "reason"], m.refusals)
        times = m.auth_check
        yield family(CounterMetricFamily, "auth_check_answers", "/auth/check answers by HTTP "
                     "status (200 allowed, 401 no session, 403 role too low, 400 unknown "
                     "role).", ["status"], times.statuses)
        yield HistogramMetricFamily(
            PREFIX + "auth_check_seconds", "Time the agent took to answer /auth/check, from "
            "the request reaching its handler to the answer built (only with [metrics] "
            "listen set).", buckets=[(_le(bound), count)
                                     for bound, count in times.cumulative()],
            sum_value=times.sum)
        revalidations = CounterMetricFamily(PREFIX + "revalidations", "Re-validations of SSO "
                                            "sessions with Entra ID, by outcome.",
                                            labels=["outcome"])
        for outcome in REVALIDATION_OUTCOMES:
            revalidations.add_metric([outcome], m.revalidations.get(outcome, 0))
        yield revalidations
        yield family(CounterMetricFamily, "config_reloads", "Configuration reloads (SIGHUP) "
                     "by result: applied, rejected (invalid file, old one kept), failed "
                     "(could not start, old one kept).", ["result"], m.reloads)
        yield GaugeMetricFamily(PREFIX + "config_last_reload_success_timestamp_seconds",
                                "When the configuration was last applied (start or reload; "
                                "Unix time).", value=m.last_reload_success)
        yield CounterMetricFamily(PREFIX + "malformed_requests", "Requests the front door "
                                  "answered with a generic 400 (malformed, oversized).",
                                  value=m.malformed)
        yield family(CounterMetricFamily, "throttled_requests", "Requests refused to slow a "
                     "client down: sso_start (too many sign-in starts from one address), "
                     "local_sign_in (failed local sign-ins, or too many at once).", ["what"],
                     m.throttled)

    def _readings(self, r: Readings, now: float) -> Iterator[Metric]:
        yield GaugeMetricFamily(PREFIX + "ready", "1 when /readyz answers ready, else 0.",
                                value=1 if r.ready else 0)
        counts: dict[tuple[str, str], int] = {(role, method): 0 for role in ROLE_IDS
                                              for method in METHODS}
        for (role, method), count in r.sessions.items():
            key = (one_of(role, ROLE_IDS), one_of(method, METHODS))
            counts[key] = counts.get(key, 0) + count
        yield family(GaugeMetricFamily, "sessions", "Live sessions by role and method.",
                     ["role", "method"], counts)
        yield GaugeMetricFamily(PREFIX + "revalidation_lag_seconds", "Seconds since Entra ID "
                                "last confirmed the SSO session it confirmed least recently "
                                "(0 without SSO sessions).", value=r.revalidation_lag)
        yield GaugeMetricFamily(PREFIX + "revalidate_interval_seconds", "[session] "
                                "revalidate_interval: every SSO session is confirmed this "
                                "often (for comparing the lag with).",
                                value=r.revalidate_interval)
        yield GaugeMetricFamily(PREFIX + "state_writable", "1 when the session state "
                                "directory can be written (new sign-ins possible), else 0.",
                                value=1 if r.state_writable else 0)
        up = GaugeMetricFamily(PREFIX + "dependency_up", "1 when the dependency answered "
                               "the agent's last use of it, else 0.", labels=["dependency"])
        last = GaugeMetricFamily(PREFIX + "dependency_last_success_timestamp_seconds",
                                 "When the dependency last answered (Unix time; absent: "
                                 "not since start).", labels=["dependency"])
        for name in DEPENDENCIES:
            dependency = r.dependencies.get(name)
            if dependency is None:
                continue
            up.add_metric([name], 1 if dependency.up else 0)
            if dependency.last_success is not None:
                last.add_metric([name], dependency.last_success)
        yield up
        yield last
        failures = CounterMetricFamily(PREFIX + "task_failures", "Unexpected failures of a "
                                       "background task (each is restarted with backoff).",
                                       labels=["task"])
        failing = GaugeMetricFamily(PREFIX + "task_failing", "1 while the background task "
                                    "is failing (listed under degraded in /readyz).",
                                    labels=["task"])
        failing_now = {one_of(task, TASKS) for task in r.failing_tasks}
        for task, count in self.metrics.task_failures(r.task_failures).items():
            failures.add_metric([task], count)
            failing.add_metric([task], 1 if task in failing_now else 0)
        yield failures
        yield failing


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def agent_registry(collector: AgentCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition format (version 0.0.4) of every family of ``registry``."""
    return generate_latest(registry)

