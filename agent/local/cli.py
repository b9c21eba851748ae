"""``sensor-sso-agent local-user add | passwd | remove | list``: on-premises accounts.

Passwords are prompted for twice on the terminal, or read as one line from standard input
with ``--password-stdin``; never from the command line (other users see argv in ``ps``).
Each change is written to the audit log on standard error (``local_account_added``,
``local_account_changed``, ``local_account_removed``, with the caller's uid) and takes effect
in the running agent at its next reload (``systemctl reload sensor-sso-agent``), which also
ends the sessions of a removed account or of one whose role or password changed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

import structlog

from ..logging import configure_logging
from ..roles import ROLES
from ..settings import load_or_report
from .accounts import (
    NAME_RULE,
    Account,
    AccountsError,
    check_account_fields,
    locked,
    read_accounts,
    write_accounts,
)
from .passwords import WeakPassword, check_new_password, hash_password

audit = structlog.get_logger("agent.audit")

APPLY = "Reload the agent to apply it: systemctl reload sensor-sso-agent"


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg] # argparse's own
               config_help: str) -> None:
    text = "on-premises accounts for sign-in when Entra ID cannot be reached"
    local = sub.add_parser("local-user", help=text, description=text)
    actions = local.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text,
                                                        description=help_text)
        p.add_argument("--config", default=None, metavar="PATH", help=config_help)
        return p

    add = action("add", "add an account (password prompted twice, or --password-stdin)")
    add.add_argument("name", help=NAME_RULE)
    add.add_argument("--role", required=True, choices=list(ROLES))
    add.add_argument("--first-name", required=True)
    add.add_argument("--last-name", required=True)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password as one line from standard input")
    passwd = action("passwd", "set an account's password (ends its sessions at reload)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password as one line from standard input")
    remove = action("remove", "remove an account (ends its sessions at reload)")
    remove.add_argument("name")
    action("list", "list the accounts (never their passwords)")


def run(args: argparse.Namespace, config: str) -> int:
    settings = load_or_report(config)
    if settings is None:
        return 1
    path = settings.local.accounts_file
    configure_logging(file=sys.stderr)
    commands: dict[str, Callable[[], int]] = {
        "add": lambda: _add(path, args), "passwd": lambda: _passwd(path, args),
        "remove": lambda: _remove(path, args.name), "list": lambda: _list(path)}
    try:
        return commands[args.action]()
    except (AccountsError, WeakPassword) as exc:
        prefix = "password refused: " if isinstance(exc, WeakPassword) else ""
        print(f"local-user {args.action}: {prefix}{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"local-user {args.action}: {path}: {exc.strerror}", file=sys.stderr)
        return 1


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise AccountsError("the two passwords differ; nothing changed")
    check_new_password(password, name)
    return password


def _add(path: Path, args: argparse.Namespace) -> int:
    check_account_fields(args.name, args.role, args.first_name, args.last_name)
    with locked(path):
        accounts = read_accounts(path)
        if args.name in accounts:
            raise AccountsError(f"an account named {args.name} exists already")
        password = _read_password(args.name, args.password_stdin)
        account = Account.create(args.name, args.role, args.first_name.strip(),
                                 args.last_name.strip(), hash_password(password))
        write_accounts(path, {**accounts, account.name: account})
    audit.info("local_account_added", name=account.name, role=account.role, by_uid=os.getuid())
    print(f"added local account {account.name} ({ROLES[account.role].name}). {APPLY}")
    return 0


def _passwd(path: Path, args: argparse.Namespace) -> int:
    with locked(path):
        accounts = read_accounts(path)
        if args.name not in accounts:
            raise AccountsError(f"no local account named {args.name}")
        password = _read_password(args.name, args.password_stdin)
        account = accounts[args.name].changed_to(password_hash=hash_password(password))
        write_accounts(path, {**accounts, account.name: account})
    audit.info("local_account_changed", name=account.name, change="password",
               by_uid=os.getuid())
    print(f"changed the password of {account.name}; its sessions end. {APPLY}")
    return 0


def _remove(path: Path, name: str) -> int:
    with locked(path):
        accounts = read_accounts(path)
        if name not in accounts:
            raise AccountsError(f"no local account named {name}")
        gone = accounts.pop(name)
        write_accounts(path, accounts)
    audit.info("local_account_removed", name=gone.name, role=gone.role, by_uid=os.getuid())
    print(f"removed local account {gone.name}; its sessions end. {APPLY}")
    return 0


def _list(path: Path) -> int:
    accounts = read_accounts(path)
    if not accounts:
        print(f"no local accounts in {path}")
        return 0
    print(f"{'USER NAME':24} {'ROLE':18} FIRST AND LAST NAME")
    for a in accounts.values():
        print(f"{a.name:24} {ROLES[a.role].name:18} {a.given_name} {a.family_name}")
    return 0
