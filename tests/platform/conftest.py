"""Windows as keyctl.platform and python-fido2 see it, on Linux: keyctl.platform reads sys.platform
'win32' (only that module: the rest of keyctl and its libraries stay on Linux), ctypes gains WinDLL,
HRESULT and windll, and WinDLL("webauthn") is the fake DLL of tests/platform/webauthn_dll.py."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from keyctl import platform
from tests.platform.webauthn_dll import FakeWebAuthnDll, Hresult
from tests.webauthn.conftest import reference  # noqa: F401  (the reference server on loopback)

FIDO2_WINDOWS = ("fido2.client.windows", "fido2.client.win_api")

Windows = Callable[..., FakeWebAuthnDll | None]


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[Windows]:
    """``windows(dll, admin=False)``: pretend to be Windows with that webauthn.dll (None: no DLL)."""

    def install(dll: FakeWebAuthnDll | None, admin: bool = False) -> FakeWebAuthnDll | None:
        dlls: dict[str, Any] = {"user32": SimpleNamespace(GetForegroundWindow=lambda: 0)}
        if dll is not None:
            dlls["webauthn"] = dll

        def win_dll(name: str, **_: Any) -> Any:
            if name not in dlls:
                raise FileNotFoundError(f"Could not find module '{name}' (or one of its dependencies)")
            return dlls[name]

        monkeypatch.setattr(platform, "sys", SimpleNamespace(platform="win32"))
        monkeypatch.setattr(ctypes, "WinDLL", win_dll, raising=False)
        monkeypatch.setattr(ctypes, "HRESULT", Hresult, raising=False)
        shell32 = SimpleNamespace(IsUserAnAdmin=lambda: int(admin))
        monkeypatch.setattr(ctypes, "windll", SimpleNamespace(shell32=shell32), raising=False)
        for module in FIDO2_WINDOWS:
            monkeypatch.delitem(sys.modules, module, raising=False)
        return dll

    yield install
    for module in FIDO2_WINDOWS:
        sys.modules.pop(module, None)
