/* cidr.c - placeholder until the module lands. */
