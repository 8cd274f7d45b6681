/*
 * trec-tflm: storage of the TREC kernel's hash codes and cluster ids (not a public header): one byte
 * each when H <= 8, else two (trec_geom.id_size).
 */
#ifndef TREC_IDS_H
#define TREC_IDS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "trec_attributes.h"

TREC_INLINE int32_t trec_read_id(const uint8_t *ids, int32_t size, size_t i)
{
    if (size == 1) {
        return ids[i];
    }
    uint16_t v;
    memcpy(&v, ids + 2 * i, 2);
    return v;
}

TREC_INLINE void trec_write_id(uint8_t *ids, int32_t size, size_t i, int32_t v)
{
    if (size == 1) {
        ids[i] = (uint8_t)v;
    } else {
        const uint16_t u = (uint16_t)v;
        memcpy(ids + 2 * i, &u, 2);
    }
}

#endif /* TREC_IDS_H */
