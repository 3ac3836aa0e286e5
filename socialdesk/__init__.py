"""SocialDesk: the composition root (configuration, CLI, service, demo) over bot, connectors, warehouse."""
