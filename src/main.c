/* main.c - being written. */
