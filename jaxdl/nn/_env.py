"""On/off switches read from the environment (``JAXDL_FAST_CONV``, ``JAXDL_WINOGRAD``)."""

import os


def switch(name: str) -> bool:
    """True unless the variable says 0 / false / no / off (unset means on)."""
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")
