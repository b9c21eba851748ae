"""``[metrics] listen``: off by default, host:port when set, problems named, shown as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.settings import config_warnings, load_settings, settings_from_mapping
from agent.show_config import describe
from tests.settings.test_load import filled_example, minimal


def with_metrics(listen: object, server_listen: str | None = None) -> dict[str, object]:
    data = minimal()
    data["metrics"] = {"listen": listen}
    if server_listen is not None:
        data["server"] = {"listen": server_listen}
    return data


class TestMetricsKey:
    def test_off_by_default_and_when_empty(self) -> None:
        """No [metrics] section, or an empty listen, means no metrics listener."""
        assert not settings_from_mapping(minimal()).metrics.enabled
        assert not settings_from_mapping(with_metrics("")).metrics.enabled

    def test_host_and_port(self) -> None:
        """IPv4, a name and a bracketed IPv6 address with a port are accepted as written."""
        for listen, host, port in (("127.0.0.1:9464", "127.0.0.1", 9464),
                                   ("monitoring.plant:9464", "monitoring.plant", 9464),
                                   ("[::1]:9464", "::1", 9464)):
            metrics = settings_from_mapping(with_metrics(listen)).metrics
            assert (host, port, listen) == (metrics.listen_host, metrics.listen_port,
                                            metrics.listen)

    @pytest.mark.parametrize("listen", ["9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                        "http://127.0.0.1:9464", 9464])
    def test_a_bad_listen_is_a_problem(self, listen: object) -> None:
        """Anything but host:port (or empty) is named with the key and an example."""
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(with_metrics(listen))
        assert ["metrics.listen"] == [key for key, _, _ in caught.value.problems]

    def test_the_agents_own_address_is_a_problem(self) -> None:
        """The metrics listener cannot share server.listen."""
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(with_metrics("127.0.0.1:8080", "127.0.0.1:8080"))
        assert "must differ from server.listen" in caught.value.problems[0][2]

    def test_an_unknown_key_is_a_problem(self) -> None:
        """[metrics] knows listen only."""
        data = with_metrics("127.0.0.1:9464")
        data["metrics"] = {"listen": "127.0.0.1:9464", "path": "/metrics"}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        assert "metrics.path" == caught.value.problems[0][0]

    def test_show_config_prints_it(self) -> None:
        """show-config shows the key as the file writes it, and says when it is off."""
        lines = describe(settings_from_mapping(with_metrics("127.0.0.1:9464")))
        assert ["[metrics]", "listen = '127.0.0.1:9464'"] == lines[-2:]
        lines = describe(settings_from_mapping(minimal()))
        assert "listen = ''  # off: no metrics listener" == lines[-1]

    def test_the_example_shows_the_key_and_keeps_it_off(self, tmp_path: Path) -> None:
        """The shipped example documents [metrics] listen, off as shipped."""
        text = filled_example(tmp_path).read_text()
        assert "[metrics]" in text and "127.0.0.1:9464" in text
        assert not load_settings(filled_example(tmp_path)).metrics.enabled


class TestMetricsWarningsAndNotes:
    @pytest.mark.parametrize("listen", ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464",
                                        "monitoring.plant:9464"])
    def test_beyond_loopback_is_a_warning(self, listen: str) -> None:
        """A metrics listener reachable from the network is named: no authentication, no
        TLS, and what to do instead."""
        warnings = config_warnings(settings_from_mapping(with_metrics(listen)))
        assert [w for w in warnings if w.startswith(f"metrics.listen = {listen!r}")]

    @pytest.mark.parametrize("listen", ["127.0.0.1:9464", "[::1]:9464", "localhost:9464", ""])
    def test_loopback_or_off_is_no_warning(self, listen: str) -> None:
        """Loopback (or no metrics) warns of nothing."""
        warnings = config_warnings(settings_from_mapping(with_metrics(listen)))
        assert not [w for w in warnings if w.startswith("metrics.")]

    def test_check_config_says_where_the_metrics_are(self, tmp_path: Path) -> None:
        """check-config on a valid file with [metrics] listen notes the URL to scrape."""
        path = filled_example(tmp_path)
        path.write_text(path.read_text().replace('listen = ""', 'listen = "127.0.0.1:9464"'))
        done = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config",  # noqa: S603
                               str(path)], capture_output=True, text=True, timeout=120,
                              check=False, cwd=Path(__file__).parents[2])
        assert 0 == done.returncode, done.stderr
        assert "note: Prometheus metrics at http://127.0.0.1:9464/metrics" in done.stdout
