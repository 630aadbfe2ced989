"""`python -m archiver` is the console script."""

from archiver.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
