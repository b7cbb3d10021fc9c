"""The binding rules of ``downlink.security.senders``, without a server."""

from __future__ import annotations

from downlink.security.senders import (
    ID_MAX,
    Binding,
    Proof,
    compare,
    network_of,
    normalise_id,
    proof_of,
    secret_hash,
)


def test_networks_are_masked_to_the_configured_prefixes() -> None:
    assert network_of("198.51.100.7", 24, 56) == "198.51.100.0/24"
    assert network_of("198.51.100.7", 32, 56) == "198.51.100.7/32"
    assert network_of("198.51.100.7", 0, 56) == "0.0.0.0/0"
    assert network_of("2001:db8:1:2ff:3::1", 24, 56) == "2001:db8:1:200::/56"
    assert network_of("::ffff:198.51.100.7", 24, 56) == "198.51.100.0/24"
    assert network_of("not an address", 24, 56) == ""
    assert network_of(None, 24, 56) == ""


def test_a_presented_secret_decides_then_the_certificate_then_the_network() -> None:
    bound = Binding(secret_hash("s3cret"), False, "198.51.100.0/24", None)
    home, away = "198.51.100.0/24", "203.0.113.0/24"
    assert compare(bound, Proof("198.51.100.9"), home).matches
    assert not compare(bound, Proof("203.0.113.9"), away).matches
    assert compare(bound, Proof("203.0.113.9", secret="s3cret"), away).matches
    wrong = compare(bound, Proof("198.51.100.9", secret="other"), home)
    assert not wrong.matches and wrong.reason == "wrong secret"
    seen = Binding(bound.secret_hash, True, bound.network, None)
    assert not compare(seen, Proof("198.51.100.9"), home).matches
    with_cert = Binding(bound.secret_hash, False, home, "ab12")
    assert compare(with_cert, Proof("203.0.113.9", cert="ab12"), away).matches
    assert not compare(with_cert, Proof("198.51.100.9"), home).matches
    assert not compare(with_cert, Proof("198.51.100.9", cert="ff00"), home).matches


def test_proof_reads_the_secret_the_certificate_header_and_the_address() -> None:
    headers = [(b"x-downlink-sender-secret", b" abc "), (b"x-client-fp", b"AB:CD:EF")]
    proof = proof_of(headers, ("192.0.2.1", 5000), "X-Client-FP")
    assert proof == Proof("192.0.2.1", "abc", "abcdef")
    # The certificate header counts only when configured (a client could send it).
    assert proof_of(headers, None, "").cert is None


def test_long_ids_are_stored_by_their_hash() -> None:
    assert normalise_id("m" * ID_MAX) == "m" * ID_MAX
    long = normalise_id("m" * (ID_MAX + 1))
    assert long.startswith("sha256:") and len(long) == 71
