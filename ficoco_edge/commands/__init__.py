"""`ficoco-edge` subcommands, grouped by module; each module lists its commands in COMMANDS.

Modules import their heavy libraries inside the command bodies so `ficoco-edge --help` stays fast.
"""
