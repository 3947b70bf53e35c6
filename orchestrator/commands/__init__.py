"""One module per `nasloop` subcommand group: each parses options, calls the library (`api` and the
packages below it) and prints. Imports any host package; only `cli` imports it."""
