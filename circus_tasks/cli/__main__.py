"""``python -m circus_tasks.cli``: the ``circus`` command line."""

from circus_tasks.cli.app import main

main()
