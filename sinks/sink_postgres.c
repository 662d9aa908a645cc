/* sink_postgres.c - being written. */
