/* smtp.c - placeholder until the module lands. */
