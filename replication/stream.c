/* stream.c - being written. */
