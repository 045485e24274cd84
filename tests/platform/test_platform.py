"""The platform bridges. These machines run Linux only: the Linux path runs for real; the macOS path and
the Windows bridge run against fakes at their narrowest boundary (sys.platform; webauthn.dll's function
table as fido2 loads it through ctypes.WinDLL). None of this has run on real Windows or macOS."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector

from keyctl import platform
from keyctl.errors import ExitCode, NotSupported

COLLECTOR = DefaultClientDataCollector("https://example.com")


def test_linux_explains_and_points_elsewhere() -> None:
    assert sys.platform == "linux"
    found = platform.status()
    assert (found.available, found.routes_usb) == (False, False)
    assert "Linux has no platform authenticator" in found.detail
    with pytest.raises(NotSupported) as raised:
        platform.platform_client(COLLECTOR)
    assert raised.value.exit_code == ExitCode.NOT_SUPPORTED
    assert raised.value.message.startswith("Passkeys not supported on this device")
    assert "virtual:NAME" in raised.value.remedy
    assert platform.usb_client(COLLECTOR) is None


def test_macos_names_the_missing_entitlements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(NotSupported, match="entitlement"):
        platform.platform_client(COLLECTOR)
    assert not platform.status().available


class FakeWebAuthnDll:
    """webauthn.dll as fido2 sees it: a function table whose argtypes/restype fido2 assigns."""

    def __init__(self, api_version: int) -> None:
        self.api_version = api_version

    def __getattr__(self, name: str) -> Any:
        function: Any = SimpleNamespace(argtypes=None, restype=None)
        if name == "WebAuthNGetApiVersionNumber":
            function = _callable(lambda: self.api_version)
        setattr(self, name, function)
        return function


def _callable(implementation: Callable[..., Any]) -> Any:
    class Function:
        argtypes = None
        restype = None

        def __call__(self, *args: Any) -> Any:
            return implementation(*args)

    return Function()


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int, bool], None]]:
    """Pretend to be Windows with a given webauthn.dll API version (0: no DLL) and admin rights."""

    def install(api_version: int, admin: bool) -> None:
        dlls = {
            "webauthn": FakeWebAuthnDll(api_version),
            "user32": SimpleNamespace(GetForegroundWindow=lambda: 0),
        }
        monkeypatch.setattr(sys, "platform", "win32")
        monkeypatch.setattr(ctypes, "WinDLL", lambda name, **_: dlls[name], raising=False)
        monkeypatch.setattr(ctypes, "HRESULT", ctypes.c_long, raising=False)
        monkeypatch.setattr(
            ctypes,
            "windll",
            SimpleNamespace(shell32=SimpleNamespace(IsUserAnAdmin=lambda: int(admin))),
            raising=False,
        )
        for module in ("fido2.client.windows", "fido2.client.win_api"):
            monkeypatch.delitem(sys.modules, module, raising=False)

    yield install
    for module in ("fido2.client.windows", "fido2.client.win_api"):
        sys.modules.pop(module, None)


def test_windows_hello_and_usb_routing_without_admin(windows: Callable[[int, bool], None]) -> None:
    windows(4, False)
    found = platform.status()
    assert found.available
    assert "API version 4" in found.detail
    assert found.routes_usb
    from keyctl.platform.windows import HelloClient

    assert isinstance(platform.platform_client(COLLECTOR), HelloClient)
    assert isinstance(platform.usb_client(COLLECTOR), HelloClient)


def test_windows_as_admin_keeps_raw_hid_for_usb(windows: Callable[[int, bool], None]) -> None:
    windows(4, True)
    assert platform.status().available
    assert not platform.status().routes_usb
    assert platform.usb_client(COLLECTOR) is None


def test_windows_without_webauthn_api(windows: Callable[[int, bool], None]) -> None:
    windows(0, False)
    assert not platform.status().available
    with pytest.raises(NotSupported, match=r"webauthn\.dll is missing"):
        platform.platform_client(COLLECTOR)


def test_doctor_reports_the_platform(cli: Any) -> None:
    import json

    result = cli("doctor", "--json")
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "platform authenticator")
    assert check["status"] == "info"
    assert "Linux" in check["detail"]
