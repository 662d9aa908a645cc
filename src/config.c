/* config.c - being written. */
