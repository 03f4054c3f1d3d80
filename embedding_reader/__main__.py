"""`python -m embedding_reader`: the command line (see embedding_reader.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
