"""The client side of WebAuthn ceremonies: keyctl plays the browser's role against a target server.

``profile`` describes how a server exposes the ceremonies, ``origin`` does the browser's anti-phishing
checks, ``session`` talks HTTP, ``ceremony`` drives an authenticator through fido2's ``Fido2Client``,
``errors`` turns CTAP and server failures into the catalogue of ``keyctl.errors``, and ``flows`` puts
them together (``register``, ``login`` and the password/2FA sign-in of keyctl's reference server).
"""
