"""sbilab's Hydra launchers (a ``hydra_plugins`` package: Hydra instantiates launchers from here only)."""
