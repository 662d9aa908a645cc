/* sink_redis.c - being written. */
