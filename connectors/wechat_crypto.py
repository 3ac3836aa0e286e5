"""WeChat Official Account message signing and safe-mode (安全模式) encryption.

Owns the two primitives the WeChat connector and its simulate() share, so there is exactly one
implementation of each: the SHA-1 signature over sorted strings, and the AES-256-CBC envelope
(random16 + big-endian length + message + appid, PKCS#7 to a 32-byte block, IV = key[:16]).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from connectors.base import same

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16


class BadCiphertext(ValueError):
    """The Encrypt field is not a well-formed WeChat envelope (base64, length, padding)."""


class WrongAppId(ValueError):
    """The envelope decrypted, but it was sealed for another app id."""


def signature(*parts: str) -> str:
    """sha1 of the sorted concatenation, hex: both `signature` and `msg_signature` use this."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character EncodingAESKey; ValueError if it is not one."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(key: bytes, app_id: str, message: bytes, random16: bytes | None = None) -> str:
    """The base64 `Encrypt` value WeChat would send for `message`."""
    plain = (random16 or os.urandom(16)) + struct.pack(">I", len(message)) + message + app_id.encode()
    pad = BLOCK - len(plain) % BLOCK  # 1..32: an aligned message still gets a full block
    plain += bytes([pad]) * pad
    enc = _cipher(key).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def decrypt(key: bytes, app_id: str, encrypted: str) -> bytes:
    """The message inside an `Encrypt` value; BadCiphertext or WrongAppId, never anything else."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadCiphertext("Encrypt is not base64") from exc
    if not raw or len(raw) % 16:
        raise BadCiphertext("Encrypt is not a whole number of AES blocks")
    dec = _cipher(key).decryptor()
    plain = dec.update(raw) + dec.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
        raise BadCiphertext("bad padding")
    plain = plain[:-pad]
    if len(plain) < 20:
        raise BadCiphertext("plaintext too short")
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise BadCiphertext("message length beyond the plaintext")
    message, sealed_for = plain[20:20 + length], plain[20 + length:]
    if not same(sealed_for, app_id.encode()):
        raise WrongAppId("message sealed for another app id")
    return message
