/* sink_jsonl.c - being written. */
