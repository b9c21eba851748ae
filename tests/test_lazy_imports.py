"""MSAL and requests wait for a sign-in (about 8 MiB of an idle agent's memory; see
docs/performance.md); prometheus_client waits for ``[metrics] listen``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a process of its own: the test process has imported MSAL long before.
SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from agent.web import keys
from tests.harness import make_stack

async def main():
    stack = await make_stack(Path(sys.argv[1]))
    seen = {"at_ready": sorted({"msal", "requests", "prometheus_client"} & set(sys.modules))}
    client = stack.app[keys.SIGN_IN].idp.client
    browser = stack.browser()
    await browser.get("/login")  # the sign-in page: MSAL is built in the background
    for _ in range(200):
        if client.loaded:
            break
        await asyncio.sleep(0.05)
    seen["built_after_login_page"] = client.loaded
    await browser.sign_in("admin@contoso.example")
    seen["check"] = (await browser.get("/auth/check")).status
    await stack.close()
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_msal_waits_for_the_sign_in_page_and_sign_in_works(tmp_path: Path) -> None:
    """A ready agent has imported neither MSAL nor requests (nor prometheus_client, without
    [metrics] listen); the sign-in page builds the MSAL application in the background (the
    first sign-in's start need not wait for it), and signing in works."""
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert 0 == done.returncode, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"at_ready": [], "built_after_login_page": True, "check": 200} == seen
