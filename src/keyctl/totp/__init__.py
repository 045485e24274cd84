"""TOTP/HOTP: otpauth model and URIs, codes (RFC 4226/6238), the vault (keyring + index file), QR in/out,
importers (URI lists, Google Authenticator migration, Aegis)."""
