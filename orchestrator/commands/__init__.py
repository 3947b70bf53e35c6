"""One module per `nasloop` subcommand group."""
