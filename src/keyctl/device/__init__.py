"""Operations on a FIDO2 security key (real or virtual) over CTAP2: info, PIN, credentials, config."""
