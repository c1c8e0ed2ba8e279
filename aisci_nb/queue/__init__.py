"""MongoDB as the only coordinator: claims, leases, hand-back, cancel, submit, reaper, pickup."""
