#include "blocktime.h"

uint64_t blocktime_propose(uint64_t now_ms, uint64_t last_block_ms)
{
    return now_ms > last_block_ms ? now_ms : last_block_ms;
}

int blocktime_check(uint64_t *ahead_ms, uint64_t *behind_ms, uint64_t time_ms, uint64_t now_ms,
                    uint32_t skew_max_ms, bool fresh)
{
    BEX_ASSERT(ahead_ms != NULL);
    BEX_ASSERT(behind_ms != NULL);
    *ahead_ms = time_ms > now_ms ? time_ms - now_ms : 0;
    *behind_ms = time_ms < now_ms ? now_ms - time_ms : 0;
    /* Compared as differences: now_ms + skew_max_ms could wrap for a hostile time_ms near the top. */
    if (*ahead_ms > skew_max_ms)
        return -BEX_ELIMIT;
    if (fresh && *behind_ms > skew_max_ms)
        return -BEX_ELIMIT;
    return 0;
}
