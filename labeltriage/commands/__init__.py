"""One module per CLI capability; each exposes click commands named in `labeltriage.cli.COMMANDS`."""
