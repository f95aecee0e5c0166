/* data.c - placeholder until the module lands. */
