/* relay.c - placeholder until the module lands. */
