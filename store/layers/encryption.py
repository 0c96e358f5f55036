"""The encryption-at-rest layer: AES-256-GCM (``cryptography``).

Assumes of the layer below: a ``MutableMapping[str, bytes]``; offers the same above.

Stored value: version byte ``1`` + 12-byte random nonce + ciphertext + 16-byte tag.
The storage key is the associated data, so a value moved to another key fails to
decrypt instead of being read as that key's value. A wrong key, a missing key or an
altered value raises :class:`~.exceptions.DecryptionError`: never garbage.

Keys (document ids) are not encrypted: ranges and ordered scans need them in clear.
"""
from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..base import CodecLayer
from ..exceptions import ConfigurationError, DecryptionError

VERSION = b"\x01"
NONCE = 12


def parse_key(text: str | bytes | None, setting: str = "encryption_key") -> bytes:
    """A 32-byte key from 64 hex digits or base64 text; ``ConfigurationError`` otherwise."""
    if not text:
        raise ConfigurationError(setting, "the encryption layer needs a 256-bit key "
                                          "(64 hex digits or base64), e.g. from SETTEE_ENCRYPTION_KEY")
    if isinstance(text, bytes) and len(text) == 32:
        return text
    text = text.decode() if isinstance(text, bytes) else text
    text = text.strip()
    for decode in (bytes.fromhex, base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise ConfigurationError(setting, "not a 256-bit key: give 64 hex digits or 32 bytes in base64")


class AESGCMEncryption(CodecLayer[bytes, bytes]):
    """Encrypt every value with AES-256-GCM under ``key``."""

    def __init__(self, inner, key: str | bytes | None = None):
        super().__init__(inner)
        self._aead = AESGCM(parse_key(key))

    def encode(self, key: str, value: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return VERSION + nonce + self._aead.encrypt(nonce, value, key.encode())

    def decode(self, key: str, stored: bytes) -> bytes:
        if stored[:1] != VERSION or len(stored) < 1 + NONCE + 16:
            raise DecryptionError(key, "not an encrypted value (was encryption turned on "
                                       "over existing data?)")
        nonce, sealed = stored[1:1 + NONCE], stored[1 + NONCE:]
        try:
            return self._aead.decrypt(nonce, sealed, key.encode())
        except InvalidTag as e:
            raise DecryptionError(key, "wrong encryption key, or the value was altered") from e
