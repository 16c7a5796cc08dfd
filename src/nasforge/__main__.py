"""Entry point for ``python -m nasforge``."""

from nasforge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
