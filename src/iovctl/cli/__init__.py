"""The command line: parses, calls services, renders. Talks to services only."""
