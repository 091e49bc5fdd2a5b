"""SIP digest authentication: header syntax, nonces, replay table, server and client."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from callcenter.passwords import sip_ha1
from callcenter.sip.digest import (
    DigestVerifier,
    NonceCounts,
    NonceIssuer,
    Outcome,
    authorization_for,
    choose_challenge,
    digest_response,
    parse_auth_params,
)

SECRET = b"0123456789abcdef-cluster-secret"
REALM = "pbx.example.com"
URI = "sip:pbx.example.com"
USERS = {"alice": "correct horse", "bob": "battery staple"}

# RFC 7616 §3.9.1
RFC_USER = "Mufasa"
RFC_PASSWORD = "Circle of Life"
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_MD5_RESPONSE = "8ca523f5e9506fed4657c9700eebdbec"
RFC_SHA256_RESPONSE = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def lookup_ha1(username, algorithm):
    password = USERS.get(username)
    return None if password is None else sip_ha1(username, REALM, password, algorithm)


def make_verifier(clock=None, lifetime=300, max_entries=100_000, **options):
    clock = clock or Clock()
    clock.advance(1_700_000_000)
    issuer = NonceIssuer(SECRET, clock, lifetime=lifetime)
    return clock, DigestVerifier(REALM, issuer, NonceCounts(clock, max_entries), **options)


def answer(challenge, username="alice", password=None, nc=1, method="REGISTER", uri=URI):
    password = USERS[username] if password is None else password
    return authorization_for(challenge, method, uri, username, password, lambda: "0a4f113b", nc)


def verify(verifier, authorization, method="REGISTER", uri=URI):
    return verifier.verify(method, authorization, lookup_ha1, uri)


def quote(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_header(params):
    return "Digest " + ", ".join(f"{name}={quote(value)}" for name, value in params.items())


def replace_param(authorization, name, value):
    _, params = parse_auth_params(authorization)
    params[name] = value
    return digest_header(params)


def without_param(authorization, name):
    _, params = parse_auth_params(authorization)
    del params[name]
    return digest_header(params)


# -- parse_auth_params -----------------------------------------------------


def test_parse_rfc7616_challenge():
    scheme, params = parse_auth_params(
        f'Digest\n  realm="{RFC_REALM}",\n  qop="auth, auth-int",\n  algorithm=SHA-256,'
        f'\n  nonce="{RFC_NONCE}",\n  opaque="{RFC_OPAQUE}"'
    )
    assert scheme == "Digest"
    assert params == {
        "realm": RFC_REALM,
        "qop": "auth, auth-int",
        "algorithm": "SHA-256",
        "nonce": RFC_NONCE,
        "opaque": RFC_OPAQUE,
    }


def test_parse_names_lower_cased_escapes_commas_and_spaces():
    scheme, params = parse_auth_params(
        'digest  USERNAME = "a\\"b\\\\c" ,, Realm="x, y" ,nc=00000001,qop=auth ,'
    )
    assert scheme == "digest"
    assert params == {"username": 'a"b\\c', "realm": "x, y", "nc": "00000001", "qop": "auth"}


def test_parse_scheme_alone():
    assert parse_auth_params("  Digest ") == ("Digest", {})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        '"Digest" realm="x"',
        'Digest,realm="x"',
        'Digest realm="x',
        'Digest realm="x\\',
        "Digest realm",
        "Digest realm=",
        'Digest realm="x" nonce="y"',
        'Digest realm="x", realm="y"',
        'Digest realm="x", REALM="y"',
        'Digest ="x"',
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ",
    ],
)
def test_parse_rejects_malformed(value):
    with pytest.raises(ValueError):
        parse_auth_params(value)


@given(st.text())
def test_parse_raises_only_value_error(value):
    try:
        scheme, params = parse_auth_params(value)
    except ValueError:
        return
    assert scheme and all(name == name.lower() for name in params)


@given(
    st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10),
        st.text(max_size=20),
        max_size=6,
    )
)
def test_parse_reads_back_what_was_quoted(params):
    assert parse_auth_params(digest_header(params)) == ("Digest", params)


def careful_outcome(parse, value):
    try:
        return parse(value)
    except ValueError:
        return "refused"


# Pieces of Authorization values, put together at random: mostly well
# formed, often only just not (a missing comma, a stray quote, a name twice).
_PIECES = st.sampled_from(
    ["Digest", " ", ",", "=", '"', "\\", "\t", "\r\n", "username", "REALM", "nc", "a-b", "x",
     '"v"', '"a,b"', '"q\\"x"', "00000001", "é", "(", ""]
)


@given(st.one_of(st.text(), st.lists(_PIECES, max_size=16).map("".join)))
@settings(max_examples=400)
def test_parse_quick_path_agrees_with_the_careful_parser(value):
    from callcenter.sip import digest

    careful = careful_outcome(lambda v: digest._parse_auth_params_carefully(v.strip(" \t\r\n")), value)
    assert careful_outcome(parse_auth_params, value) == careful


# -- the computation -------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm, expected", [("MD5", RFC_MD5_RESPONSE), ("SHA-256", RFC_SHA256_RESPONSE)]
)
def test_rfc7616_vectors(algorithm, expected):
    ha1 = sip_ha1(RFC_USER, RFC_REALM, RFC_PASSWORD, algorithm)
    response = digest_response(
        algorithm, ha1, RFC_NONCE, "GET", "/dir/index.html", "auth", "00000001", RFC_CNONCE
    )
    assert response == expected


@pytest.mark.parametrize(
    "algorithm, expected", [("MD5", RFC_MD5_RESPONSE), ("SHA-256", RFC_SHA256_RESPONSE)]
)
def test_client_answers_rfc7616_challenge(algorithm, expected):
    challenge = (
        f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm},'
        f' nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )
    value = authorization_for(
        challenge, "GET", "/dir/index.html", RFC_USER, RFC_PASSWORD, lambda: RFC_CNONCE, 1
    )
    scheme, params = parse_auth_params(value)
    assert scheme == "Digest"
    assert params == {
        "username": RFC_USER,
        "realm": RFC_REALM,
        "nonce": RFC_NONCE,
        "uri": "/dir/index.html",
        "response": expected,
        "qop": "auth",
        "nc": "00000001",
        "cnonce": RFC_CNONCE,
        "algorithm": algorithm,
        "opaque": RFC_OPAQUE,
    }


def test_client_rfc2069_form_without_qop():
    value = authorization_for(
        'Digest realm="r", nonce="n"', "REGISTER", URI, "alice", "pw", lambda: "unused", 1
    )
    _, params = parse_auth_params(value)
    ha1 = hashlib.md5(b"alice:r:pw").hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{URI}".encode()).hexdigest()
    assert params["response"] == hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert {"qop", "nc", "cnonce", "algorithm"}.isdisjoint(params)


@pytest.mark.parametrize(
    "challenge",
    [
        'Basic realm="r"',
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", qop="auth-int"',
        'Digest realm="r", nonce="n',
    ],
)
def test_client_refuses_unsupported_challenges(challenge):
    with pytest.raises(ValueError):
        authorization_for(challenge, "REGISTER", URI, "alice", "pw", lambda: "c", 1)


def test_choose_challenge_prefers_sha256():
    md5 = 'Digest realm="r", nonce="n", algorithm=MD5'
    sha256 = 'Digest realm="r", nonce="n", algorithm=SHA-256'
    assert choose_challenge([md5, sha256]) == sha256
    assert choose_challenge(['Digest realm="r", nonce="n"', 'Basic realm="r"']) is not None
    assert choose_challenge(['Basic realm="r"', "Digest realm=", md5.replace("MD5", "X")]) is None


# -- nonces ----------------------------------------------------------------


def test_nonce_lifecycle():
    clock = Clock()
    issuer = NonceIssuer(SECRET, clock, lifetime=300)
    nonce = issuer.issue()
    assert issuer.check(nonce) == "valid"
    clock.advance(300)
    assert issuer.check(nonce) == "valid"
    clock.advance(1)
    assert issuer.check(nonce) == "stale"
    assert issuer.issue() != nonce


def test_nonce_issued_in_the_same_second_differ():
    issuer = NonceIssuer(SECRET, Clock())
    assert len({issuer.issue() for _ in range(100)}) == 100


def test_nonce_verified_by_another_node_with_the_same_secret():
    clock = Clock()
    nonce = NonceIssuer(SECRET, clock).issue()
    assert NonceIssuer(SECRET, clock).check(nonce) == "valid"
    assert NonceIssuer(b"another secret of 16+ bytes", clock).check(nonce) == "invalid"


def test_forged_nonces_are_invalid():
    clock = Clock()
    issuer = NonceIssuer(SECRET, clock)
    nonce = issuer.issue()
    flipped = nonce[:-1] + ("A" if nonce[-1] != "A" else "B")
    for forged in [flipped, nonce + "A", nonce[:-1], "", "not a nonce", nonce.replace("-", "+")]:
        if forged != nonce:
            assert issuer.check(forged) == "invalid"


def test_nonce_from_far_future_is_invalid():
    clock = Clock()
    clock.advance(10_000)
    nonce = NonceIssuer(SECRET, clock).issue()
    earlier = Clock()
    earlier.advance(10_000 - 10)
    assert NonceIssuer(SECRET, earlier).check(nonce) == "valid"
    earlier.advance(-1_000)
    assert NonceIssuer(SECRET, earlier).check(nonce) == "invalid"


def test_short_secret_refused():
    with pytest.raises(ValueError):
        NonceIssuer(b"short", Clock())


@given(st.text())
def test_nonce_check_never_raises(text):
    assert NonceIssuer(SECRET, Clock()).check(text) in ("valid", "stale", "invalid")


# -- the replay table ------------------------------------------------------


def test_nonce_counts_must_increase():
    counts = NonceCounts(Clock())
    assert counts.advance("n1", 1, 300) == "ok"
    assert counts.advance("n1", 1, 300) == "replayed"
    assert counts.advance("n1", 3, 300) == "ok"
    assert counts.advance("n1", 2, 300) == "replayed"
    assert counts.advance("n2", 1, 300) == "ok"


def test_nonce_counts_expire_and_are_bounded():
    clock = Clock()
    counts = NonceCounts(clock, max_entries=3)
    for n in range(3):
        assert counts.advance(f"n{n}", 1, 100 + n) == "ok"
    assert counts.advance("late", 1, 500) == "stale"
    assert counts.advance("n0", 2, 100) == "ok"  # known nonces still count
    clock.advance(100.5)
    assert counts.advance("late", 1, 500) == "ok"
    assert len(counts) == 3
    clock.advance(10)
    assert counts.advance("later", 1, 600) == "ok"
    assert len(counts) == 2


# -- the verifier ----------------------------------------------------------


def test_challenge_offers_sha256_then_md5():
    _, verifier = make_verifier(opaque="op")
    sha256, md5 = verifier.challenge()
    for value, algorithm in [(sha256, "SHA-256"), (md5, "MD5")]:
        scheme, params = parse_auth_params(value)
        assert scheme == "Digest"
        assert params["algorithm"] == algorithm
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert params["opaque"] == "op"
        assert "stale" not in params
    assert parse_auth_params(sha256)[1]["nonce"] == parse_auth_params(md5)[1]["nonce"]
    assert parse_auth_params(verifier.challenge(stale=True)[0])[1]["stale"] == "true"


def test_challenge_quotes_realm():
    clock = Clock()
    verifier = DigestVerifier('a "b" \\c', NonceIssuer(SECRET, clock), NonceCounts(clock))
    assert parse_auth_params(verifier.challenge()[0])[1]["realm"] == 'a "b" \\c'


@pytest.mark.parametrize("index, algorithm", [(0, "SHA-256"), (1, "MD5")])
def test_round_trip(index, algorithm):
    _, verifier = make_verifier()
    outcome = verify(verifier, answer(verifier.challenge()[index]))
    assert outcome == Outcome("ok", "ok", "ok", "alice", algorithm)
    assert outcome.ok and not outcome.stale


def test_round_trip_with_opaque_and_sip_method():
    _, verifier = make_verifier(opaque="xyz")
    challenge = verifier.challenge()[0]
    assert verify(verifier, answer(challenge, method="INVITE"), method="INVITE").ok
    assert not verify(verifier, answer(challenge, nc=2), method="INVITE").ok
    forged_opaque = replace_param(answer(challenge, nc=3), "opaque", "other")
    assert verify(verifier, forged_opaque).log_reason == "opaque mismatch"


def test_wrong_password_and_unknown_user_look_the_same():
    _, verifier = make_verifier()
    challenge = verifier.challenge()[0]
    wrong = verify(verifier, answer(challenge, password="guess"))
    unknown = verify(verifier, answer(challenge, username="mallory", password="guess"))
    assert (wrong.kind, wrong.log_reason) == ("failed", "wrong response")
    assert (unknown.kind, unknown.log_reason) == ("failed", "unknown user")
    assert wrong.public == unknown.public == "invalid credentials"
    assert unknown.username == "mallory"


def test_user_without_ha1_for_that_algorithm_looks_unknown():
    _, verifier = make_verifier()
    outcome = verifier.verify(
        "REGISTER",
        answer(verifier.challenge()[0]),
        lambda username, algorithm: None if algorithm == "SHA-256" else "0" * 32,
        URI,
    )
    assert outcome.public == "invalid credentials"


def test_stale_nonce_with_right_password_is_stale():
    clock, verifier = make_verifier(lifetime=300)
    challenge = verifier.challenge()[0]
    clock.advance(301)
    outcome = verify(verifier, answer(challenge))
    assert outcome.stale and outcome.kind == "stale"
    assert outcome.public == "stale nonce"


def test_stale_nonce_with_wrong_password_fails():
    # RFC 7616 §3.3: stale=true only tells a client that knows the password.
    clock, verifier = make_verifier(lifetime=300)
    challenge = verifier.challenge()[0]
    clock.advance(301)
    assert verify(verifier, answer(challenge, password="guess")).kind == "failed"


def test_forged_nonce_fails():
    clock, verifier = make_verifier()
    impostor_issuer = NonceIssuer(b"not the cluster secret", clock)
    impostor = DigestVerifier(REALM, impostor_issuer, NonceCounts(clock))
    outcome = verify(verifier, answer(impostor.challenge()[0]))
    assert (outcome.kind, outcome.log_reason) == ("failed", "nonce not issued by us")
    assert outcome.public == "invalid credentials"


def test_replayed_nc_fails_and_increasing_nc_succeeds():
    _, verifier = make_verifier()
    challenge = verifier.challenge()[0]
    first = answer(challenge, nc=1)
    assert verify(verifier, first).ok
    replay = verify(verifier, first)
    assert (replay.kind, replay.log_reason) == ("failed", "replayed nonce-count")
    assert verify(verifier, answer(challenge, nc=2)).ok
    assert verify(verifier, answer(challenge, nc=5)).ok
    assert not verify(verifier, answer(challenge, nc=4)).ok
    assert verify(verifier, answer(verifier.challenge()[1], nc=1)).ok


def test_wrong_response_does_not_advance_nc():
    _, verifier = make_verifier()
    challenge = verifier.challenge()[0]
    assert not verify(verifier, answer(challenge, nc=9, password="guess")).ok
    assert verify(verifier, answer(challenge, nc=1)).ok


def test_full_replay_table_answers_stale():
    _, verifier = make_verifier(max_entries=1)
    assert verify(verifier, answer(verifier.challenge()[0])).ok
    outcome = verify(verifier, answer(verifier.challenge()[0]))
    assert (outcome.kind, outcome.log_reason) == ("stale", "nonce-count table full")


def test_realm_mismatch():
    _, verifier = make_verifier()
    authorization = answer(verifier.challenge()[0].replace(REALM, "other.example.com"))
    outcome = verify(verifier, authorization)
    assert (outcome.kind, outcome.public) == ("failed", "realm mismatch")


@pytest.mark.parametrize("name", ["username", "realm", "nonce", "uri", "response", "nc", "cnonce"])
def test_missing_params(name):
    _, verifier = make_verifier()
    outcome = verify(verifier, without_param(answer(verifier.challenge()[0]), name))
    assert (outcome.kind, outcome.log_reason) == ("failed", f"missing {name}")
    assert outcome.public == "malformed credentials"


def test_uri_must_match_request_uri():
    _, verifier = make_verifier()
    challenge = verifier.challenge()[0]
    outcome = verify(verifier, answer(challenge, uri="sip:other.example.com"))
    assert (outcome.kind, outcome.public) == ("failed", "uri mismatch")
    # Scheme and host compare case-insensitively (RFC 3261 §19.1.4), the user part not.
    mixed_case = answer(challenge, nc=1, uri="SIP:alice@PBX.Example.COM;transport=udp")
    assert verify(verifier, mixed_case, uri="sip:alice@pbx.example.com;transport=udp").ok
    other_user = answer(challenge, nc=2, uri="sip:Alice@pbx.example.com")
    assert not verify(verifier, other_user, uri="sip:alice@pbx.example.com").ok


def test_qop_required_unless_rfc2069_allowed():
    _, strict = make_verifier()
    outcome = verify(strict, answer(without_param(strict.challenge()[1], "qop")))
    assert (outcome.kind, outcome.log_reason) == ("failed", "qop=auth required")

    _, lenient = make_verifier(allow_rfc2069=True)
    assert verify(lenient, answer(without_param(lenient.challenge()[1], "qop"))).ok


@pytest.mark.parametrize(
    "name, value, log_reason",
    [
        ("algorithm", "MD5-sess", "unsupported algorithm"),
        ("qop", "auth-int", "unsupported qop"),
        ("nc", "1", "malformed nc"),
        ("nc", "0000000g", "malformed nc"),
        ("response", "abc", "malformed response"),
        ("response", "z" * 64, "malformed response"),
    ],
)
def test_unsupported_or_malformed(name, value, log_reason):
    _, verifier = make_verifier()
    outcome = verify(verifier, replace_param(answer(verifier.challenge()[0]), name, value))
    assert (outcome.kind, outcome.log_reason) == ("failed", log_reason)


def test_other_schemes_and_garbage_fail():
    _, verifier = make_verifier()
    for value in ["Basic YWxpY2U6cHc=", 'Digest username="alice', ""]:
        outcome = verify(verifier, value)
        assert outcome.kind == "failed" and outcome.public == "malformed credentials"


def test_algorithm_and_response_case_tolerated():
    _, verifier = make_verifier()
    authorization = answer(verifier.challenge()[0])
    _, params = parse_auth_params(authorization)
    upper = replace_param(
        replace_param(authorization, "algorithm", "sha-256"), "response", params["response"].upper()
    )
    assert verify(verifier, upper).ok


_PARAM_NAMES = st.sampled_from(
    "username realm nonce uri response qop nc cnonce algorithm opaque x".split()
)


@settings(max_examples=300)
@given(
    st.one_of(st.text(), st.dictionaries(_PARAM_NAMES, st.text(max_size=70)).map(digest_header)),
    st.text(max_size=10),
    st.text(max_size=30),
)
def test_verify_never_raises(authorization, method, request_uri):
    _, verifier = make_verifier(allow_rfc2069=True)
    outcome = verifier.verify(method, authorization, lookup_ha1, request_uri)
    assert isinstance(outcome, Outcome)
    assert outcome.kind in ("ok", "stale", "failed")
    assert outcome.kind != "ok"


@settings(max_examples=300)
@given(_PARAM_NAMES, st.text(max_size=70), st.integers(0, 2**32 - 1))
def test_verify_never_raises_on_a_tampered_answer(name, value, nc):
    _, verifier = make_verifier()
    authorization = replace_param(answer(verifier.challenge()[0], nc=max(nc, 1)), name, value)
    outcome = verify(verifier, authorization)
    assert isinstance(outcome, Outcome)
    assert outcome.kind in ("ok", "stale", "failed")


def test_undecodable_text_hashes_without_raising():
    # Header text decoded with surrogateescape carries lone surrogates.
    _, verifier = make_verifier()
    authorization = replace_param(answer(verifier.challenge()[0]), "cnonce", "\udcff")
    assert verifier.verify("REG\udc80", authorization, lookup_ha1, URI).kind == "failed"
