"""The library's messages name its parameters; the command kit adds the options that set them."""

from __future__ import annotations

import rediswq
from rediswq_kit import message


def test_an_evicting_redis_error_gains_the_option_and_variable_that_allow_it() -> None:
    error = rediswq.EvictingRedis("Redis runs allkeys-lru: set it to noeviction (or allow_eviction=True)")
    assert message(error) == (
        f"{error}; on the command line: rediswq --allow-eviction or REDISWQ_ALLOW_EVICTION=1"
    )


def test_a_wanted_client_certificate_gains_the_tls_cert_and_tls_key_options() -> None:
    error = rediswq.TLSFailed("the server wants a client certificate (tls_cert= and tls_key=): alert")
    assert message(error).endswith("; on the command line: --tls-cert and --tls-key")


def test_a_hint_applies_to_its_own_error_type_only() -> None:
    # A bad-argument message that happens to quote the parameter is not a refused certificate.
    error = rediswq.InvalidArgument("tls_cert= names no file: /nope.pem")
    assert message(error) == str(error)


def test_a_message_naming_no_parameter_is_left_as_it_is() -> None:
    error = rediswq.TLSFailed("TLS with Redis at rediss://h:6379/0 failed: certificate verify failed")
    assert message(error) == str(error)
