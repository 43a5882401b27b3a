// Helpers for the CPU kernels' inner loops.
#pragma once

// Loops written branch-free over plain arrays are auto-vectorised by the compiler.
// On x86-64 with GCC, ZOO_VECTOR_CLONES also builds an AVX2 copy of the function and
// picks it at load time on CPUs that have AVX2 (the extension itself is built for the
// baseline x86-64 ISA, so it runs everywhere).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ZOO_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ZOO_VECTOR_CLONES
#endif
