"""The terminal side of the ``prompt`` presence policy: the person at the keyboard plays the touch."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from keyctl.authenticator import PresenceRequest

_lock = threading.Lock()

# Set by the command line while a ceremony shows a touch spinner: called with True before a question is
# written and False once it is answered, so that nothing draws over the question meanwhile.
question_hook: Callable[[bool], None] | None = None


def terminal_prompter(request: PresenceRequest) -> bool:
    """Ask on stderr, read y/n from stdin; without a terminal nobody can touch, so the answer is no."""
    if not sys.stdin.isatty():
        return False
    where = f" for {request.rp_id}" if request.rp_id else ""
    with _lock:
        hook = question_hook
        if hook is not None:
            hook(True)
        try:
            sys.stderr.write(f"Touch the virtual key to {request.action}{where}? [y/N] ")
            sys.stderr.flush()
            return sys.stdin.readline().strip().lower() in ("y", "yes")
        finally:
            if hook is not None:
                hook(False)
