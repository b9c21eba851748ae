"""The issue's targets against one run's figures, and the printed table (Markdown)."""

from __future__ import annotations

from typing import Any

from .metrics import rows as metrics_rows


def _target(name: str, value: Any, goal: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "value": value, "goal": goal,
            "met": None if value is None else met}


def evaluate(r: dict[str, Any]) -> list[dict[str, Any]]:
    c8, c64 = r["auth_check"]["c8"], r["auth_check"]["c64"]
    many = r["auth_check_many_sessions"]
    sign = r["sign_in"]
    res = r["resources"]
    nginx = r.get("console_through_nginx", {})
    stall = sign["healthz_during_sign_ins"].get("p99_ms")
    return [
        _target("/auth/check vs bare handler, 8 conns", c8["ratio"], ">= 0.85",
                (c8["ratio"] or 0) >= 0.85),
        _target("/auth/check vs bare handler by server CPU per request, 8 conns",
                c8["cpu_ratio"], ">= 0.85", (c8["cpu_ratio"] or 0) >= 0.85),
        _target("/auth/check vs bare handler, 64 conns", c64["ratio"], ">= 0.85",
                (c64["ratio"] or 0) >= 0.85),
        _target("/auth/check vs bare handler by server CPU per request, 64 conns",
                c64["cpu_ratio"], ">= 0.85", (c64["cpu_ratio"] or 0) >= 0.85),
        _target("/auth/check p99 at 64 conns (ms)", c64["agent"]["p99_ms"], "<= 10",
                (c64["agent"]["p99_ms"] or 1e9) <= 10),
        _target("many sessions vs one, 64 conns", many["c64"]["vs_one_session"], ">= 0.90",
                (many["c64"]["vs_one_session"] or 0) >= 0.90),
        _target("many sessions vs one by server CPU per request, 64 conns",
                many["c64"]["vs_one_session_cpu"], ">= 0.90",
                (many["c64"]["vs_one_session_cpu"] or 0) >= 0.90),
        _target("discovery + JWKS fetches during sign-ins",
                sign["discovery_fetches"] + sign["jwks_fetches"], "== 0",
                sign["discovery_fetches"] + sign["jwks_fetches"] == 0),
        _target("/healthz p99 during sign-ins (ms)", stall, "<= 10 (loop not blocked)",
                stall is not None and stall <= 10),
        _target("agent CPU per sign-in (ms)", sign["agent_cpu_ms_per_sign_in"], "<= 4",
                sign["agent_cpu_ms_per_sign_in"] <= 4),
        _target("console request with auth_request vs without, through nginx",
                nginx.get("no_cache", {}).get("ratio"), ">= 0.5",
                (nginx.get("no_cache", {}).get("ratio") or 0) >= 0.5),
        _target("the same with the optional /auth/check cache",
                nginx.get("check_cache", {}).get("ratio"), ">= 0.85",
                (nginx.get("check_cache", {}).get("ratio") or 0) >= 0.85),
        _target("/auth/check vs bare handler with re-validation running, 64 conns",
                r["auth_check_revalidating"]["c64"]["ratio"], ">= 0.85",
                (r["auth_check_revalidating"]["c64"]["ratio"] or 0) >= 0.85),
        _target("RSS idle (MiB)", res["rss_idle_mib"], "<= 60", res["rss_idle_mib"] <= 60),
        _target("RSS added by the sessions, without refresh tokens (MiB)",
                res["rss_sessions_no_refresh_tokens_delta_mib"], "<= 64",
                res["rss_sessions_no_refresh_tokens_delta_mib"] <= 64),
        _target("start to /readyz 200 (s)", res["ready_s"], "<= 1.5", res["ready_s"] <= 1.5),
        _target("start to /readyz 200 with the sessions to restore, without refresh tokens (s)",
                res["ready_with_sessions_no_refresh_tokens_s"], "<= 1.5",
                res["ready_with_sessions_no_refresh_tokens_s"] <= 1.5),
        _target("the same, each session holding a refresh token (s)",
                res["ready_with_sessions_s"], "<= 1.5", res["ready_with_sessions_s"] <= 1.5),
        *metrics_targets(r["metrics"]),
    ]


def metrics_targets(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21: /auth/check with metrics on within 3 % of metrics off."""
    out = []
    for name in ("c8", "c64"):
        row = m[name]
        out.append(_target(f"/auth/check metrics on vs off, {name[1:]} conns", row["ratio"],
                           ">= 0.97", (row["ratio"] or 0) >= 0.97))
        out.append(_target(f"/auth/check metrics on vs off by server CPU per request, "
                           f"{name[1:]} conns", row["cpu_ratio"], ">= 0.97",
                           (row["cpu_ratio"] or 0) >= 0.97))
    return out


def _lat(row: dict[str, Any]) -> str:
    return (f"{row['rps']:,.0f} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['server_cpu_us_per_request']} µs server CPU/req") + (
        f" ({row['bad_responses']} bad, {row['errors']} errors)"
        if row["bad_responses"] or row["errors"] else "")


def table(r: dict[str, Any]) -> str:
    if r["mode"] == "only metrics":
        return _only_metrics(r)
    m = r["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python "
             f"{m['python']}, aiohttp {m['aiohttp']}; load client {m['load_client']}"
             f"{' (1 thread)' if m['load_client'] == 'wrk' else ''}; {r['mode']} run, "
             f"best of {r['parameters']['repeats']} alternating "
             f"{r['parameters']['seconds']:g} s runs, {m['date']}; 1-min load average "
             f"{m['loadavg_at_start']:.2f} at start, {m['loadavg_at_end']:.2f} at end "
             "(well above 0 means other work shared the cores)", "",
             "| measurement | result |", "|---|---|"]
    for name, row in r["auth_check"].items():
        lines.append(f"| /auth/check, 1 session, {name[1:]} conns | {_lat(row['agent'])} |")
        lines.append(f"| bare aiohttp handler, {name[1:]} conns | {_lat(row['ceiling'])} |")
        lines.append(f"| ratio agent / bare, {name[1:]} conns | {row['ratio']} req/s, "
                     f"{row['cpu_ratio']} by CPU per request |")
    lines += metrics_rows(r["metrics"], _lat)
    many = r["auth_check_many_sessions"]
    for name in ("c8", "c64"):
        row = many[name]
        lines.append(f"| /auth/check, {many['sessions']:,} sessions, {name[1:]} conns | "
                     f"{_lat(row['agent'])} ({row['vs_one_session']}× one session by req/s, "
                     f"{row['vs_one_session_cpu']}× by CPU per request; runs alternated with "
                     f"the one-session agent's: {_lat(row['one_session'])}) |")
    during = r["auth_check_revalidating"]
    for name in ("c8", "c64"):
        row = during[name]
        lines.append(f"| /auth/check with re-validation running ({during['sessions']} sessions "
                     f"every {during['interval_s']:g} s), {name[1:]} conns | "
                     f"{_lat(row['agent'])}; ratio to bare {row['ratio']} req/s, "
                     f"{row['cpu_ratio']} by CPU; {row['vs_without_revalidation']}× the agent "
                     f"without re-validation by req/s, {row['vs_without_revalidation_cpu']}× by "
                     "CPU (runs alternated) |")
    rv = r["revalidation"]
    lines.append(f"| re-validations (refresh + ID token + role) | {rv['per_s']}/s, agent CPU "
                 f"{rv['agent_cpu_ms_per_revalidation']} ms each |")
    s = r["sign_in"]
    h = s["healthz_during_sign_ins"]
    lines += [
        f"| complete sign-ins ({s['concurrency']} at a time) | {s['per_s']}/s "
        f"({s['sign_ins']} in {s['seconds']} s, {s['failures']} failed) |",
        f"| agent CPU per sign-in | {s['agent_cpu_ms_per_sign_in']} ms |",
        f"| discovery / JWKS fetches during sign-ins | {s['discovery_fetches']} / "
        f"{s['jwks_fetches']} |",
        f"| /healthz latency during sign-ins | p50 {h.get('p50_ms')} ms, p99 {h.get('p99_ms')} "
        f"ms, max {h.get('max_ms')} ms |",
    ]
    nginx = r.get("console_through_nginx", {})
    if "skipped" in nginx:
        lines.append(f"| console request through nginx | skipped: {nginx['skipped']} |")
    for name, label in (("no_cache", ""), ("check_cache", " (optional /auth/check cache)")):
        if name not in nginx:
            continue
        row = nginx[name]
        for kind, what in (("auth_request", "with auth_request"), ("without", "without")):
            run = row[kind]
            lines.append(f"| console request via nginx (TLS, {nginx['connections']} conns), "
                         f"{what}{label} | {run['rps']:,.0f} req/s, p50 {run['p50_ms']} ms, "
                         f"p99 {run['p99_ms']} ms; CPU/req nginx "
                         f"{run['nginx_cpu_us_per_request']} µs, agent "
                         f"{run['agent_cpu_us_per_request']} µs"
                         + (f" ({run['bad_responses']} bad, {run['errors']} errors)"
                            if run["bad_responses"] or run["errors"] else "") + " |")
        lines.append(f"| ratio with / without auth_request{label} | {row['ratio']} |")
    t = r["id_token"]
    lines.append(f"| ID token validations (no target) | {t['validate_per_s']:,}/s vs raw "
                 f"RSA-2048 verify {t['raw_rsa2048_verify_per_s']:,}/s = {t['ratio']} |")
    res = r["resources"]
    lines += [
        f"| RSS idle | {res['rss_idle_mib']} MiB |",
        f"| RSS after the first sign-in (MSAL and requests imported) | "
        f"{res['rss_signed_in_mib']} MiB |",
        f"| RSS with {many['sessions']:,} sessions, each holding a "
        f"{res['refresh_token_chars']}-character refresh token | "
        f"{res['rss_with_sessions_mib']} MiB (+{res['rss_sessions_delta_mib']} MiB over the "
        "signed-in agent) |",
        f"| RSS with {many['sessions']:,} sessions without refresh tokens | "
        f"{res['rss_with_sessions_no_refresh_tokens_mib']} MiB "
        f"(+{res['rss_sessions_no_refresh_tokens_delta_mib']} MiB over the signed-in agent) |",
        f"| start to /readyz 200 | {res['ready_s']} s ({res['ready_with_sessions_s']} s with "
        f"{many['sessions']:,} sessions to restore, "
        f"{res['ready_with_sessions_no_refresh_tokens_s']} s without refresh tokens) |",
        "", "| target | value | goal | met |", "|---|---|---|---|",
    ]
    for t in r["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {met} |")
    return "\n".join(lines)


def _header(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python "
            f"{m['python']}, aiohttp {m['aiohttp']}; load client {m['load_client']}; "
            f"{r['mode']} run, best of {r['parameters']['repeats']} alternating "
            f"{r['parameters']['seconds']:g} s runs, {m['date']}; 1-min load average "
            f"{m['loadavg_at_start']:.2f} at start, {m['loadavg_at_end']:.2f} at end")


def _only_metrics(r: dict[str, Any]) -> str:
    lines = [_header(r), "", "| measurement | result |", "|---|---|",
             *metrics_rows(r["metrics"], _lat), "", "| target | value | goal | met |",
             "|---|---|---|---|"]
    for t in r["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {met} |")
    return "\n".join(lines)
