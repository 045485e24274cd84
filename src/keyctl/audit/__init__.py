"""Auditing authenticators and registered passkeys against FIDO metadata."""
