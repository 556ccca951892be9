"""``python -m upss.devstripe``: the local Stripe (``--help`` for the options)."""

from .server import main

if __name__ == "__main__":
    main()
