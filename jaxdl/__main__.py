"""``python -m jaxdl ...``: the same as the ``jaxdl`` command."""

from jaxdl.cli import console_main

if __name__ == "__main__":
    console_main()
