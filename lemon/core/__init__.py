"""What every layer may use, and which imports no other layer: the registry, the errors, where data and
caches live, atomic file writing, array files read through memory maps, the flag generator, the device."""
