/* decode.c - being written. */
