"""`python -m oneflow_ai` runs the `oneflow` command."""

from oneflow_ai.cli import main

main()
