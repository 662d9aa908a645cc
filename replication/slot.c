/* slot.c - being written. */
