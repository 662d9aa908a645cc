/* template.c - being written. */
