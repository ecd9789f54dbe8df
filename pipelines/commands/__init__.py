"""Subcommands of the `recrl` CLI, one module each with `register(commands)` and `run(args)`."""
