/*
 * keyslot.h - Redis Cluster hash slots (as Redis's keyHashSlot): slot = CRC16(k) mod 16384, where k is the
 * whole key unless the key has a '{' followed later by a '}' with at least one byte between the first '{'
 * and the first '}' after it: then k is those bytes. Only the first '{' counts: "foo{}{bar}" hashes all of
 * "foo{}{bar}" (the first tag is empty), not "bar"; "foo{{bar}}" hashes "{bar".
 */
#ifndef WALCAST_KEYSLOT_H
#define WALCAST_KEYSLOT_H

#include <stddef.h>
#include <stdint.h>

#define WC_KEYSLOTS 16384

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis's crc16(); "123456789" gives 0x31C3. */
uint16_t wc_crc16(const char *buf, size_t len);
/* The hash slot of key[0..len), hash tags honoured. */
int wc_keyslot(const char *key, size_t len);

#endif
