/* engine.c - being written. */
