"""Password hashing (scrypt) and the rules for new passwords."""

from __future__ import annotations

import pytest

from agent.local.passwords import (
    MIN_LENGTH,
    WeakPassword,
    check_new_password,
    hash_password,
    verify_password,
)


class TestHashing:
    def test_the_right_password_verifies_and_a_wrong_one_does_not(self) -> None:
        """A hash verifies its own password only."""
        stored = hash_password("amber-falcon-tunnel-42")
        assert (True, False) == (verify_password(stored, "amber-falcon-tunnel-42"),
                                 verify_password(stored, "amber-falcon-tunnel-43"))

    def test_the_hash_names_scrypt_and_its_cost_and_not_the_password(self) -> None:
        """``scrypt$n=32768,r=8,p=3$salt$hash``: parameters travel with the hash."""
        stored = hash_password("amber-falcon-tunnel-42")
        assert ("scrypt", "n=32768,r=8,p=3", False) == (
            stored.split("$")[0], stored.split("$")[1], "amber" in stored)

    def test_two_hashes_of_one_password_differ(self) -> None:
        """A random salt per hash."""
        assert hash_password("amber-falcon-tunnel-42") != hash_password("amber-falcon-tunnel-42")

    @pytest.mark.parametrize("stored", ["", "plain", "scrypt$n=2,r=1$x$y", "md5$a$b$c",
                                        "scrypt$n=99999999,r=8,p=1$AAAA$AAAA",
                                        "scrypt$n=16,r=1,p=1$!!$AAAA"])
    def test_a_malformed_hash_never_verifies(self, stored: str) -> None:
        """Garbage in the file is a refusal, not an exception."""
        assert False is verify_password(stored, "anything")


class TestRules:
    @pytest.mark.parametrize("password, why", [
        ("short-pass", "too short"),
        ("password1234", "commonest"),
        ("Password1234!", "commonest"),
        ("QWERTYUIOP123", "commonest"),
        ("welcome2026!!", "commonest"),
        ("abcabcabcabcabc", "commonest"),
        ("zzzzzzzzzzzzzzzz", "commonest"),
        ("my-breakglass-pass", "account name"),
        ("tab\there-and-more", "control characters"),
    ])
    def test_weak_passwords_are_refused_with_the_rule_they_break(
            self, password: str, why: str) -> None:
        """The message names the rule and never repeats the password."""
        with pytest.raises(WeakPassword) as caught:
            check_new_password(password, "breakglass")
        assert why in str(caught.value) and password not in str(caught.value)

    def test_a_long_passphrase_passes(self) -> None:
        """Twelve characters or more, not common, not the name: accepted."""
        check_new_password("amber falcon tunnel", "breakglass")
        assert MIN_LENGTH == 12
