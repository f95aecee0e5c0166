/* upstream.c - placeholder until the module lands. */
