/* route.c - placeholder until the module lands. */
