/* listener.c - placeholder until the module lands. */
