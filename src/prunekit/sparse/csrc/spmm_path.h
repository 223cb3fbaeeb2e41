/*
 * One kernel path: spmm_body.h for both column index types, then the path's macros are
 * cleared for the next. The includer defines PK_TARGET, PK_LANES and PK_PATH.
 */
#define PK_IDX uint16_t
#define PK_NAME(n) PK_CAT(PK_CAT(n, PK_PATH), u16)
#include "spmm_body.h"
#undef PK_IDX
#undef PK_NAME

#define PK_IDX int32_t
#define PK_NAME(n) PK_CAT(PK_CAT(n, PK_PATH), i32)
#include "spmm_body.h"
#undef PK_IDX
#undef PK_NAME

#undef PK_TARGET
#undef PK_LANES
#undef PK_PATH
#undef PK_TRANSPOSE_DONE_FOR_PATH
