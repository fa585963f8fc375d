"""Refreshing: the loop that keeps the store up to date, the provider client, the XML parser, and
the job server that runs a refresh off the serving worker's loop."""
