"""`python -m dispatcher.receiver`: see `dispatcher.receiver.cli`."""

import sys

from dispatcher.receiver.cli import main

if __name__ == "__main__":
    sys.exit(main())
