"""macOS: why a command-line program cannot reach the platform authenticator (see docs/platform.md).

Two ways were considered and neither works for a program installed with pip:
- AuthenticationServices (ASAuthorizationPlatformPublicKeyCredentialProvider) serves passkeys only to
  apps signed with an associated-domains (webcredentials) entitlement for each relying party.
- A Secure Enclave key gated by Touch ID: SecKeyCreateRandomKey with kSecAttrTokenIDSecureEnclave fails
  with errSecMissingEntitlement (-34018) unless the binary is code-signed with keychain entitlements.
"""

WHY_NOT = (
    "macOS lets only signed apps with a per-site entitlement use its passkeys and Secure Enclave, "
    "and a command-line program has neither"
)
