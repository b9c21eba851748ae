"""The problem collector's checks one by one: each bad value is one problem naming the key,
the value and why, and the check returns a usable default so the pass goes on."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.settings.problems import Problems
from agent.settings.values import (
    format_duration,
    is_guid,
    mask_credentials,
    mask_login,
    parse_duration,
    split_proxy_login,
)
from agent.show_config import _show

GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"


@pytest.fixture
def p() -> Problems:
    return Problems()


class TestSection:
    def test_unknown_keys_are_named_with_the_known_ones(self, p: Problems) -> None:
        """An unknown key is named with a guess and the known keys; the section is kept."""
        data = {"server": {"listen": "127.0.0.1:1", "lisen": "x"}}
        assert {"listen": "127.0.0.1:1", "lisen": "x"} == p.section(data, "server", {"listen"})
        assert [("server.lisen", "'x'", "unknown key; did you mean listen? known keys: listen")
                ] == p.problems

    def test_a_near_miss_gets_a_did_you_mean(self, p: Problems) -> None:
        """A key one typo away from a known one names that one first."""
        p.section({"entra": {"client_di": "x", "zzz": 1}}, "entra",
                  {"client_id", "tenant_id", "redirect_uri"})
        assert [("entra.client_di", "'x'", "unknown key; did you mean client_id? known keys: "
                 "client_id, redirect_uri, tenant_id"),
                ("entra.zzz", "1", "unknown key; known keys: client_id, redirect_uri, "
                 "tenant_id")] == p.problems

    def test_a_section_that_is_not_a_table(self, p: Problems) -> None:
        """A section that is not a table is a problem and reads as empty."""
        assert {} == p.section({"server": 3}, "server", {"listen"})
        assert [("server", "3", "must be a table ([server])")] == p.problems

    def test_an_absent_section_is_empty(self, p: Problems) -> None:
        """An absent section is empty and no problem."""
        assert {} == p.section({}, "local", {"sign_in"})
        assert [] == p.problems


class TestValues:
    def test_a_bool_is_not_an_int(self, p: Problems) -> None:
        """true where a number belongs is a problem (Python's bool is an int; TOML's is not)."""
        assert 7 == p.get({"n": True}, "session", "n", int, 7)
        assert [("session.n", "True", "must be a int")] == p.problems

    @pytest.mark.parametrize(("text", "why"), [
        ("5 minutes", "expected a duration such as \"45s\", \"30m\", \"12h\" or \"1d\""),
        ("0s", "must be longer than zero")])
    def test_bad_durations(self, p: Problems, text: str, why: str) -> None:
        """A duration that does not parse, or is zero, is a problem saying what is expected."""
        p.duration({"timeout": text}, "entra", "timeout", 10.0)
        assert [("entra.timeout", repr(text), why)] == p.problems

    def test_durations_and_their_default(self, p: Problems) -> None:
        """A duration is read in seconds; an absent one takes its default."""
        assert 1800.0 == p.duration({"t": "30m"}, "session", "t", 1.0)
        assert 1.0 == p.duration({}, "session", "t", 1.0)
        assert [] == p.problems

    def test_guids(self, p: Problems) -> None:
        """A GUID is read in lower case; a missing or malformed one is a problem naming what it
        is."""
        assert GUID.lower() == p.guid({"tenant_id": GUID}, "entra", "tenant_id", "the tenant")
        assert "" == p.guid({}, "entra", "client_id", "the application")
        assert "not-a-guid" == p.guid({"tenant_id": "not-a-guid"}, "entra", "tenant_id", "t")
        assert [("entra.client_id", "", "required: the application"),
                ("entra.tenant_id", "'not-a-guid'", "must be a GUID (t)")] == p.problems

    @given(st.uuids())
    def test_is_guid_takes_the_36_character_form_only(self, value: object) -> None:
        """Only the 36-character form is a GUID, in either case; no braces, no bare hex."""
        assert is_guid(str(value)) and is_guid(str(value).upper())
        assert not is_guid(str(value).replace("-", ""))
        assert not is_guid("{" + str(value) + "}")

    @given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
    def test_format_duration_inverts_parse_duration(self, number: int, unit: str) -> None:
        """format_duration writes what parse_duration reads back as the same seconds."""
        seconds = parse_duration(f"{number}{unit}")
        assert seconds == parse_duration(format_duration(seconds))


class TestUrls:
    def test_credentials_never_reach_the_problem(self, p: Problems) -> None:
        """A refused proxy URL is named without its login."""
        url = "http://agent:proxy-password@proxy:3128/#x"
        assert url == p.url({"https_proxy": url}, "entra", "https_proxy", None,
                            schemes=("http", "https"), allow_credentials=True)
        assert [("entra.https_proxy", "'http://***@proxy:3128/#x'",
                 "must not carry a fragment")] == p.problems

    def test_a_proxy_may_carry_a_login_no_other_url_may(self, p: Problems) -> None:
        """A plant's proxy that asks for a login (Basic) is configured with user:password@."""
        url = "http://svc-sensor:Pl%40nt%3Apw@proxy:3128"
        assert url == p.url({"https_proxy": url}, "entra", "https_proxy", None,
                            schemes=("http", "https"), allow_credentials=True)
        assert [] == p.problems
        p.url({"authority_host": "https://u:pw@login.example"}, "entra", "authority_host", None)
        assert [("entra.authority_host", "'https://***@login.example'",
                 "must not carry a fragment or credentials")] == p.problems

    @pytest.mark.parametrize("url", ["http://svc:pa/ss@proxy:3128", "http://svc:pa#ss@proxy:3128",
                                     "http://svc:pa?ss@proxy:3128"])
    def test_a_login_not_percent_encoded_is_refused_and_still_masked(
            self, p: Problems, url: str) -> None:
        """/ # ? in a password end the URL's host part: the URL is refused, and nothing of
        the password shows in the problem."""
        p.url({"https_proxy": url}, "entra", "https_proxy", None, schemes=("http", "https"),
              allow_credentials=True)
        assert [("entra.https_proxy", "'http://***@proxy:3128'")] == [
            (key, value) for key, value, _ in p.problems]

    def test_show_config_masks_a_proxy_login_that_parses_oddly(self) -> None:
        """``http://u:1?pw@proxy`` parses as host u, port 1: still nothing of it is shown."""
        assert "'http://***@proxy'" == _show("https_proxy", "http://u:1?pw@proxy")
        assert "http://proxy:3128" == mask_login("http://proxy:3128")

    def test_proxy_login_is_split_off_and_decoded(self) -> None:
        """The URL without the login, and the Proxy-Authorization value of the decoded one."""
        bare, header = split_proxy_login("http://svc-sensor:Pl%40nt%3Ap%20w@proxy:3128")
        assert "http://proxy:3128" == bare
        assert "Basic " + base64.b64encode(b"svc-sensor:Pl@nt:p w").decode() == header
        assert ("http://proxy:3128", None) == split_proxy_login("http://proxy:3128")
        assert ("https://[::1]:3128", "Basic " + base64.b64encode(b"u:").decode()) == \
            split_proxy_login("https://u@[::1]:3128")

    def test_plain_http_only_on_loopback_and_only_when_allowed(self, p: Problems) -> None:
        """Plain http is accepted only for a loopback address, and only where the key allows it."""
        for url, allowed in (("http://127.0.0.1:8080/cb", True), ("http://localhost/cb", False),
                             ("http://sensor.example/cb", True)):
            p.url({"u": url}, "entra", "u", None, allow_loopback_http=allowed)
        assert ["'http://localhost/cb'", "'http://sensor.example/cb'"] == [
            value for _, value, _ in p.problems]

    @pytest.mark.parametrize(("url", "why"), [("https://host:port/", "is not a URL"),
                                              ("https:///path", "has no host name")])
    def test_urls_that_lead_nowhere(self, p: Problems, url: str, why: str) -> None:
        """A URL without a usable host or port is a problem that says which."""
        p.url({"u": url}, "entra", "u", None)
        assert [("entra.u", repr(url), why)] == p.problems

    def test_a_url_that_does_not_parse_is_still_masked(self) -> None:
        """A URL that does not parse still has its login masked."""
        assert "https://***@[::1/x" == mask_credentials("https://user:pw@[::1/x")
        assert "***@host" == mask_credentials("user:pw@host")


class TestFiles:
    def test_files_that_cannot_be_read(self, p: Problems, tmp_path: Path) -> None:
        """A missing file or a directory where a file belongs is a problem; neither is readable."""
        p.file({"ca_bundle": str(tmp_path / "missing.pem")}, "entra", "ca_bundle")
        p.file({"ca_bundle": str(tmp_path)}, "entra", "ca_bundle")
        assert ["file does not exist", "is not a regular file"] == [
            why for _, _, why in p.problems]
        assert not p.readable(tmp_path)

    def test_a_readable_file(self, p: Problems, tmp_path: Path) -> None:
        """A readable file is accepted as a path, with no problem."""
        path = tmp_path / "ca.pem"
        path.write_text("x")
        assert path == p.file({"ca_bundle": str(path)}, "entra", "ca_bundle")
        assert p.readable(path) and [] == p.problems
