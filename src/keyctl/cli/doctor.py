"""`keyctl doctor`: what stops keyctl from reaching security keys, simulators and the keyring, and fixes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyctl.cli.output import JsonOption, Terminal


def doctor(
    udp: Annotated[
        list[str] | None, typer.Option("--udp", metavar="HOST:PORT", help="Also check this UDP simulator.")
    ] = None,
    udev_rules: Annotated[
        bool,
        typer.Option("--udev-rules", help="Print the udev rules for FIDO keys (hidraw access) and exit."),
    ] = False,
    install_udev_rules: Annotated[
        bool,
        typer.Option(
            "--install-udev-rules",
            help="Install them in /etc/udev/rules.d (as root) and reload udev, then exit.",
        ),
    ] = False,
    as_json: JsonOption = False,
    rules_dir: Annotated[Path, typer.Option(hidden=True)] = Path("/etc/udev/rules.d"),
    sys_root: Annotated[Path, typer.Option(hidden=True)] = Path("/sys/class/hidraw"),
    dev_root: Annotated[Path, typer.Option(hidden=True)] = Path("/dev"),
    uhid_path: Annotated[str, typer.Option(hidden=True)] = "/dev/uhid",  # str: click checks a Path
) -> None:
    """Check Python, fido2, security keys and their permissions, the keyring, simulators, virtual attach;
    say how to fix."""
    from keyctl.doctor import checks, hidraw, udev

    if udev_rules:
        Terminal().line(udev.rules().rstrip("\n"))
        return
    if install_udev_rules:
        target = udev.install(rules_dir)
        Terminal().success(f"installed {target}; re-insert the key")
        return
    nodes = hidraw.scan_hidraw(sys_root, dev_root)
    results = [
        *checks.environment(),
        *checks.security_keys(nodes, hidraw.scan_usb()),
        checks.secret_store(),
        *checks.totp_file_vault(),
        checks.platform_authenticator(),
        checks.virtual_attach(uhid_path),
        *checks.simulators([f"udp:{target}" for target in udp or []]),
    ]
    code = checks.exit_code(results)
    term = Terminal(as_json)
    if as_json:
        term.json(
            {
                "ok": code == 0,
                "exit_code": int(code),
                "checks": [
                    {"name": c.name, "status": c.status.name.lower(), "detail": c.detail, "fix": c.fix}
                    for c in results
                ],
            }
        )
    else:
        term.table(
            ["status", "check", "finding", "fix"],
            [(c.status.name.lower(), c.name, c.detail, c.fix) for c in results],
        )
        failing = sum(1 for c in results if c.status is checks.Status.FAIL)
        if failing:
            term.status(f"{failing} problem(s) stop keyctl from working; see the fixes above.")
    if code:
        raise typer.Exit(int(code))
