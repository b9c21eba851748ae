"""``sensor-sso-agent devidp``: the local Entra-like provider alone, to rehearse an install.

Before the tenant's app registration exists, the *installed* agent (systemd, nginx, the
console) can be pointed at this provider with three ``[entra]`` lines and back. The provider
mirrors the agent's own configuration (``--config``): its tenant id, client id, redirect URI
and the role groups, which it gives its users, so nothing else in ``agent.toml`` changes.
With ``[roles] source = "app_roles"`` it defines the mapped app role values as the
registration's app roles and assigns each to a made-up group of that role's users, so their
ID tokens carry them in ``roles``.
Its CA, token signing key, refresh tokens and directory changes are kept in ``--state-dir``
(``devidp/persist.py``), so a restart of the provider breaks neither the agent's trust nor
its sessions' re-validation. The users' password is random per state directory and printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .demo import describe
from .devidp import DevIdentityProvider, demo_users
from .devidp.persist import Snapshots, load_password, load_signing_key, load_tls, restore
from .errors import ConfigError
from .settings import Settings, load_settings, problem_lines

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_STATE_DIR = "/var/lib/sensor-sso-agent-devidp"
SAVE_EVERY = 1.0


def add_parser(sub: Any, config_help: str) -> None:
    text = "run the local Entra-like identity provider alone, to rehearse the install"
    p = sub.add_parser("devidp", help=text, description=text + " (docs/install.md, "
                       "\"Rehearse the install\"). It takes the tenant id, client id, redirect "
                       "URI and role groups from the agent's configuration.")
    p.add_argument("--config", default=None, metavar="PATH", help=config_help)
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where it serves HTTPS (default {DEFAULT_LISTEN}; 0.0.0.0:8443 for a "
                        "browser on another machine)")
    p.add_argument("--name", default=None, metavar="HOST",
                   help="the host name in its addresses and certificate (default: the "
                        "--listen address, or redirect_uri's host when listening on all)")
    p.add_argument("--redirect-uri", action="append", default=[], metavar="URI",
                   help="another registered redirect URI besides the configuration's "
                        "(repeatable: several sensors may rehearse against one provider)")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                   help=f"its CA, keys and refresh tokens (default {DEFAULT_STATE_DIR})")


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen}: give HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def unsafe_directory(directory: Path) -> str:
    """Why ``directory`` may not hold the CA's key (someone else could plant one), or ""."""
    st = directory.lstat()
    if directory.is_symlink() or not directory.is_dir():
        return f"--state-dir {directory} is not a directory"
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return (f"--state-dir {directory} must belong to this user and not be writable by "
                f"others (it holds the CA's key): chown {os.geteuid()} {directory} && "
                f"chmod 0755 {directory}")
    return ""


def public_name(bind: str, redirect_uri: str, name: str | None) -> str:
    if name:
        return name
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(bind).is_unspecified:
            return urlsplit(redirect_uri).hostname or "127.0.0.1"
    return bind


def provider_for(settings: Settings, extra_redirects: list[str],
                 state_dir: Path, name: str) -> tuple[DevIdentityProvider, str, bool]:
    """The provider mirroring ``settings``; its password and whether its CA is new."""
    entra = settings.entra
    groups, app_roles = role_directory(settings)
    password = load_password(state_dir)
    users = demo_users(groups)
    for user in users:
        user.password = password
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(entra.redirect_uri))
    secret = None
    if entra.platform == "web" and entra.client_secret_file is not None:
        secret = entra.client_secret_file.read_text().strip()
    idp = DevIdentityProvider(
        tenant_id=entra.tenant_id, client_id=entra.client_id,
        redirect_uris=[entra.redirect_uri, *extra_redirects], users=users,
        spa=entra.platform == "spa", client_secret=secret, state_dir=state_dir, host=name,
        frontchannel_logout_url=f"{origin}/auth/sso/frontchannel-logout",
        group_labels={gid: f"{role} group" for role, ids in groups.items() for gid in ids},
        app_roles={value: f"{role} ({value})" for role, values in settings.roles.items()
                   for value in values} if app_roles else {},
        group_app_roles=app_roles)
    tls, new_ca = load_tls(state_dir, tuple(dict.fromkeys((name, "127.0.0.1", "localhost"))))
    idp.use_tls(tls)
    key = load_signing_key(state_dir)
    idp.keys = [key]
    idp.known_keys = {key.kid: key}
    restore(idp, state_dir)
    return idp, password, new_ca


def run_devidp(config: str, listen: str, name: str | None, redirect_uris: list[str],
               state_dir: str) -> int:
    try:
        bind, port = split_listen(listen)
        settings = load_settings(config)
    except ValueError as exc:
        print(f"devidp: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print("devidp: it mirrors the agent's configuration, which has problems (any GUIDs "
              "will do for the ids while the app registration does not exist yet):",
              file=sys.stderr)
        for line in problem_lines(exc):
            print(f"  {line}", file=sys.stderr)
        return 1
    if settings.entra.platform == "web" and settings.entra.client_secret_file is None:
        print("devidp: rehearse with platform = \"spa\" or a client_secret_file; a client "
              "certificate is not supported by the local provider", file=sys.stderr)
        return 1
    directory = Path(state_dir)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    unsafe = unsafe_directory(directory)
    if unsafe:
        print(f"devidp: {unsafe}", file=sys.stderr)
        return 1
    host = public_name(bind, settings.entra.redirect_uri, name)
    idp, password, new_ca = provider_for(settings, redirect_uris, directory, host)
    try:
        asyncio.run(_serve(idp, settings, bind, port, password, new_ca, config))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"devidp: {bind}:{port} is in use: choose another with --listen HOST:PORT",
                  file=sys.stderr)
        else:
            print(f"devidp: cannot listen on {bind}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(idp: DevIdentityProvider, settings: Settings, bind: str, port: int,
                 password: str, new_ca: bool, config: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await idp.start(port, bind=bind)
    assert idp.state_dir is not None
    snapshots = Snapshots(idp, idp.state_dir)
    try:
        print(banner(idp, settings, password, new_ca, config), flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAVE_EVERY)
            snapshots.save()
    finally:
        snapshots.save()
        await idp.stop()


def role_directory(settings: Settings) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(role → the groups the users get, group → the app role values assigned to it): the
    mapped groups themselves, or with ``source = "app_roles"`` one made-up group per mapped
    value, assigned that app role."""
    if settings.roles_source != "app_roles":
        return {role: list(ids) for role, ids in settings.roles.items()}, {}
    group_of = {value: str(uuid.uuid5(uuid.NAMESPACE_URL, f"sensor-sso-agent:app-role:{value}"))
                for values in settings.roles.values() for value in values}
    return ({role: [group_of[v] for v in values] for role, values in settings.roles.items()},
            {gid: [value] for value, gid in group_of.items()})


def banner(idp: DevIdentityProvider, settings: Settings, password: str, new_ca: bool,
           config: str) -> str:
    ca = idp.ca_file
    groups, _ = role_directory(settings)
    users = "\n".join(f"    {describe(u, groups, idp, settings.roles_source)}"
                      for u in idp.users)
    return (
        f"sensor-sso-agent devidp: a local rehearsal identity provider (not Entra ID) at "
        f"{idp.url}\n"
        f"  mirrors {config}: tenant {idp.tenant_id}, client {idp.client_id}, redirect URI "
        f"{', '.join(idp.redirect_uris)}\n"
        f"  {'new CA' if new_ca else 'CA kept'}: {ca}; refresh tokens kept in "
        f"{idp.state_dir}\n\n"
        f"  Point the agent at it: in [entra] of {config} add\n"
        f"    authority_host = \"{idp.authority_host}\"\n"
        f"    graph_url = \"{idp.graph_url}\"\n"
        f"    ca_bundle = \"{ca}\"\n"
        f"  then: systemctl reload sensor-sso-agent. Back to Entra ID: remove the three lines "
        f"and reload.\n\n"
        f"  Users (password {password}), one per role and per refusal:\n"
        f"    {'user':34} {'roles':28} notes\n{users}\n"
        f"  Offboard someone: {idp.pages_url}/directory\n"
        f"  Ctrl-C stops it (its state stays in {idp.state_dir}).")
