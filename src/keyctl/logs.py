"""Logging set-up: one logger per module, raw frames only at TRAFFIC (below DEBUG)."""

from __future__ import annotations

import logging

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")


def configure_logging(debug: bool, traffic: bool) -> None:
    if not (debug or traffic):
        return
    level = TRAFFIC if traffic else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpcore's debug trace holds every response's headers, Set-Cookie (a session) included: traffic.
    logging.getLogger("httpcore").setLevel(level if traffic else logging.INFO)
    if traffic:
        logging.getLogger(__name__).warning("--traffic logs raw frames and may show PINs and secrets")
