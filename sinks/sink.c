/* sink.c - being written. */
