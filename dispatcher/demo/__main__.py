"""`python -m dispatcher.demo`: see `dispatcher.demo.cli`."""

import sys

from dispatcher.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
