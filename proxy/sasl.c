/* sasl.c - placeholder until the module lands. */
