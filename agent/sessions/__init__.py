"""Who is signed in: sessions in memory, the encrypted journal that keeps them across restarts,
the state directory that holds it, and ``sensor-sso-agent sessions``.

* ``store``: ``SessionStore`` (memory plus journal: create, look up, touch, end, sweep);
* ``memory``, ``record``: the in-memory index and one session's record;
* ``journal``, ``records``, ``lines``: the journal file, its records and sealed lines;
* ``statedir``, ``files``: the state directory's checks and its files;
* ``cli``: ``sensor-sso-agent sessions list | revoke | revalidate`` over the admin socket.

Must not import ``aiohttp.web``, ``agent.web``, ``agent.signin`` or ``agent.entra``: sessions know
nothing of HTTP or of how a user signed in.
"""
