"""``sensor-sso-agent check-nginx [--file SAVED] [--url CONSOLE_URL] [-- NGINX_ARGS]``.

Reads the effective nginx configuration (``nginx -T`` from the nginx on PATH, or
/usr/sbin/nginx, with NGINX_ARGS; or the saved output of ``nginx -T`` from ``--file``), checks
the wiring (``static.py``) and, with ``--url``, what a browser meets there (``live.py``).
One line per finding, ``OK``/``FAIL``/``NOTE``, the fix under each ``FAIL``; exit 1 on any.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

from ..checklines import print_checks
from .live import check_live
from .nginxconf import DumpUnreadable, load_dump
from .static import PUBLIC_MARKER, Finding, check_config

NGINX_TIMEOUT = 30.0
SHIPPED = Path("/usr/share/sensor-sso-agent/nginx")  # where the package puts the snippets
VERBATIM = ("sensor-sso.conf", "sensor-sso-auth.conf", "sensor-sso-check-cache.conf")


def add_parser(sub: Any) -> None:
    text = "check that nginx puts the agent's sign-in in front of every console location"
    p = sub.add_parser(
        "check-nginx", help=text, description=text + ". Any arguments after -- go to "
        f"nginx -T (e.g. -- -p DIR -c FILE). A console location meant for anyone carries the "
        f"comment '# {PUBLIC_MARKER}' in its block.")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="saved output of 'nginx -T' instead of running nginx")
    p.add_argument("--url", default=None, metavar="CONSOLE_URL",
                   help="also check from outside, as a browser: e.g. "
                        "https://sensor-01.plant.example/")
    p.add_argument("--ca-file", default=None, metavar="PEM",
                   help="with --url: the CA that signed the console's certificate")
    p.add_argument("--insecure", action="store_true",
                   help="with --url: do not verify the console's certificate")
    p.add_argument("nginx_args", nargs="*", metavar="NGINX_ARGS",
                   help="after --: passed to nginx -T")


def find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def read_dump(file: str | None, nginx_args: list[str]) -> tuple[str | None, Finding | None]:
    """The ``nginx -T`` text, or the finding that says why there is none."""
    if file is not None:
        try:
            return Path(file).read_text(errors="replace"), None
        except OSError as exc:
            return None, Finding("nginx", file, False, f"cannot read: {exc.strerror}",
                                 "save it with: nginx -T > FILE")
    nginx = find_nginx()
    if nginx is None:
        return None, Finding("nginx", "nginx -T", None,
                             "no nginx on PATH or in /usr/sbin: static checks skipped (give "
                             "--file with the saved output of nginx -T)")
    try:
        done = subprocess.run([nginx, "-T", *nginx_args], capture_output=True, text=True,  # noqa: S603 - nginx's own path, operator's arguments, no shell
                              errors="replace", timeout=NGINX_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, Finding("nginx", f"{nginx} -T", False, f"did not run: {exc}",
                             "run check-nginx as root, or give --file")
    if done.returncode != 0:
        errors = " / ".join(line for line in done.stderr.splitlines() if "[emerg]" in line
                            or "failed" in line) or done.stderr.strip()
        return None, Finding("nginx", f"{nginx} -T", False, f"nginx -t fails: {errors}",
                             "fix what nginx names first (nginx -t), then run check-nginx again")
    return done.stdout, None


def stale_copies(files: dict[str, str], shipped: Path) -> list[Finding]:
    """Notes for copied snippets that differ from the installed package's (an upgrade
    brought new ones; nginx still reads the old copies)."""
    notes = []
    for path, text in files.items():
        name = Path(path).name
        source = shipped / name
        if name in VERBATIM and source.is_file() and Path(path) != source \
                and source.read_text(errors="replace").strip() != text.strip():
            notes.append(Finding(
                "snippet", path, None, f"differs from the installed package's {source}: "
                f"after an upgrade, copy it again (cp {source} {path}; nginx -t && systemctl "
                "reload nginx)"))
    return notes


def run_check_nginx(file: str | None, url: str | None, nginx_args: list[str],
                    ca_file: str | None = None, insecure: bool = False,
                    out: TextIO | None = None, shipped: Path = SHIPPED) -> int:
    out = out or sys.stdout
    findings: list[Finding] = []
    text, problem = read_dump(file, nginx_args)
    if problem is not None:
        findings.append(problem)
    if text is not None:
        try:
            config = load_dump(text)
            findings += check_config(config)
            findings += stale_copies(config.files, shipped)
        except DumpUnreadable as exc:
            findings.append(Finding("nginx", file or "nginx -T", False, str(exc),
                                    "save it with: nginx -T > FILE"))
    if problem is not None and problem.ok is None and url is None:
        problem.ok = False  # nothing at all was checked
    if url is not None:
        findings += asyncio.run(check_live(url, ca_file, insecure))
    return report(findings, out)


def report(findings: list[Finding], out: TextIO) -> int:
    failed = print_checks(((f.check, f.where, f.ok, f.detail, f.fix) for f in findings),
                          "NOTE", out)
    if failed:
        print(f"check-nginx: {failed} problem{'s' if failed != 1 else ''} (of "
              f"{len(findings)} checks)", file=out)
        return 1
    print(f"check-nginx: the sign-in is wired in front of the console ({len(findings)} "
          "checks)", file=out)
    return 0
