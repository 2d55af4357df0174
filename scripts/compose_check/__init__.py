"""The docker-compose cross-check behind scripts/check-compose.py: util,
keyshift, network, config, monitoring, project (check()), selftest."""
