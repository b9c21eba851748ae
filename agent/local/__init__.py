"""On-premises accounts beside SSO: sign-in that works when Entra ID cannot be reached.

* ``passwords``: scrypt hashing and the password rules (length, the commonest passwords);
* ``accounts``: the accounts file (atomic writes, permissions) and account names;
* ``throttle``: growing delays after failed sign-ins, kept per key;
* ``lockout``: the lockout policy (per client, per account, a clean client on a locked one);
* ``signin``: when the sign-in page offers the form, login CSRF, the sign-in itself;
* ``cli``: ``sensor-sso-agent local-user add | passwd | remove | list``.

Must not import ``aiohttp.web`` or ``agent.web``: the handlers there parse and respond.
"""
