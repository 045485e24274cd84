"""keyctl: FIDO2 security keys, passkeys and one-time codes from the terminal."""

__version__ = "0.1.0"
