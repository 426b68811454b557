// The AVX2 int8 kernels of Q8_0 (matmul_q8_0_avx2.cpp) and of the other quantized types (matmul_quant_avx2.cpp)
// compiled again for AVX-VNNI: the same register tiles with each block's byte dot as one `vpdpbusd` (int8_dot_avx2.h),
// exported as matmul_q8_0_rows_avxvnni and matmul_quant_rows_avxvnni, with the same contracts and the same results,
// bit for bit. Called only after simd_use_avxvnni(). Where the CPU also has AVX-512 VNNI, those entry points still
// hand the cases that have AVX-512 kernels to them first, as the AVX2 ones do.
#pragma GCC target("avxvnni,avx2,fma,f16c")
#define INT8_DOT_AVXVNNI 1
#include "matmul_q8_0_avx2.cpp"
#include "matmul_quant_avx2.cpp"
