"""``python -m datasync_operator``: the same command line as ``datasync-operator``."""

from datasync_operator.cli import main

if __name__ == "__main__":
    main()
