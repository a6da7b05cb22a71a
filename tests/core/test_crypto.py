"""One Fernet derivation for every purpose: tokens stored before the shared helper existed stay
readable, purposes and root secrets stay apart."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.test import override_settings

from apps.core import crypto
from apps.devices.pki import keys
from apps.telemetry.notify import secrets

ROOT = {
    "SECRET_KEY": "compat-secret-key-0123456789-0123456789-0123456789",
    "PKI_KEY_ENCRYPTION_KEY": "",
}
PKI_ROOT = {"SECRET_KEY": "other", "PKI_KEY_ENCRYPTION_KEY": "compat-pki-encryption-key-0123456789"}
# Written by the per-module Fernet helpers this module replaced (apps.devices.pki.keys and
# apps.telemetry.notify.secrets before apps.core.crypto), under the settings above: the key
# below, and the secrets "whsec_" + "A" * 43 + "=" and "whsec_" + "B" * 43 + "=".
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
STORED_KEY_SECRET_KEY = (
    "gAAAAABrDTd2SdtUsrf5jRLocRGDb7lx9r-U0r_fq_0JRdwNSQIjVyYBs97RugcwxqwWy-FqVqTCstZ9TtG2JtrLgHpulSt"
    "3ZOJKZWT7pYI3NZb2iK_eACxb8PSZfl_8NxzhKmBQZvtyRtx2cyE4T7zkAlugupgmpA=="
)
STORED_SECRET_SECRET_KEY = (
    "gAAAAABrDTd2UQkd2ysxfMnyRwEI5fmWdLhbI5g2IhdJaCB5BBNYhx2NJ2Yn_hknF5XDPwQv42NITwSMoWke4fnxDGTFNZj"
    "H9A9lF3ZOcIE-PJ7NI6HjBlkzHT9XiXwwoH7Q9FrfiTLkxSHy5hq_vxEgbbD1awxJWw=="
)
STORED_KEY_PKI_KEY = (
    "gAAAAABrDTd2GSuAuwRAr3yKLXX3y9j2S22Cg-D80UmuOSOvv4rYAsC0r6LKjHIXT_GzmUnA1tpauALdRlMseMFgJXGpd8s"
    "2jscThaQQQGANmjUfPcpyLETdiqI6I9fI7y4GhpQ9Co6wGxptESv9CxEFYmhD0cqgqg=="
)
STORED_SECRET_PKI_KEY = (
    "gAAAAABrDTd2lk_rp2FPeXcmnEX4Wrwe9kOSglu69kDdduLpMc-brxZkLM_4K_0q6tBbBI-Nsh8Uh4Mv5sGVgdisBYbhmfU"
    "_XSZ4rUdbIG8e1GX-KJgC15gvpUpg1KF_0FbEuBPRdBWVM0O4FQ_rFcUpmYtfBVbUvQ=="
)


def raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("root", "stored_key", "stored_secret", "secret"),
    [
        (ROOT, STORED_KEY_SECRET_KEY, STORED_SECRET_SECRET_KEY, "whsec_" + "A" * 43 + "="),
        (PKI_ROOT, STORED_KEY_PKI_KEY, STORED_SECRET_PKI_KEY, "whsec_" + "B" * 43 + "="),
    ],
)
def test_what_the_former_helpers_stored_is_still_readable(root, stored_key, stored_secret, secret):
    with override_settings(**root):
        key = keys.decrypt(memoryview(stored_key.encode()))
        clear = secrets.decrypt(stored_secret.encode())

    assert raw(key) == bytes(range(32))
    assert clear == secret


def test_each_purpose_has_its_own_key():
    with override_settings(**ROOT):
        token = crypto.encrypt(b"payload", purpose="fleetops-notification-secrets")

        assert crypto.decrypt(token, purpose=secrets.PURPOSE) == b"payload"
        with pytest.raises(crypto.InvalidToken):
            crypto.decrypt(token, purpose=keys.PURPOSE)
        with pytest.raises(crypto.InvalidToken):
            keys.decrypt(STORED_SECRET_SECRET_KEY.encode())


def test_the_pki_encryption_key_wins_over_the_secret_key():
    with override_settings(**PKI_ROOT):
        token = secrets.encrypt("whsec_x")
    with override_settings(**{**PKI_ROOT, "SECRET_KEY": "changed"}):
        assert secrets.decrypt(token) == "whsec_x"  # SECRET_KEY plays no part
    with override_settings(**ROOT), pytest.raises(crypto.InvalidToken):
        secrets.decrypt(token)


def test_a_key_and_a_secret_go_round_and_no_secret_is_empty():
    with override_settings(**ROOT):
        assert raw(keys.decrypt(keys.encrypt(KEY))) == bytes(range(32))
        assert secrets.decrypt(secrets.encrypt("whsec_y")) == "whsec_y"
    assert secrets.decrypt(b"") == ""
