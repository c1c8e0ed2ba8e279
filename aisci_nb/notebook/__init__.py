"""The kernel side: what a step notebook gets from `aisci_nb.init`."""
