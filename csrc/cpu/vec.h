// Helpers for the CPU kernels' inner loops.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

// Loops written branch-free over plain arrays are auto-vectorised by the compiler.
// On x86-64 with GCC, ZOO_VECTOR_CLONES also builds an AVX2 copy of the function and
// picks it at load time on CPUs that have AVX2 (the extension itself is built for the
// baseline x86-64 ISA, so it runs everywhere).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ZOO_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#define ZOO_HAVE_AVX512_PATHS 1
// Hand-written AVX-512 loops are compiled with this attribute and only called when
// cpu_has_avx512() says the CPU has AVX-512F/BW/DQ/VL.
#define ZOO_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#else
#define ZOO_VECTOR_CLONES
#define ZOO_HAVE_AVX512_PATHS 0
#endif

namespace zoo {
namespace cpu {

// ZOO_NO_AVX512=1 turns the AVX-512 loops off (read once), so that the tests can check the
// portable loops on a machine that has AVX-512.
inline bool cpu_has_avx512() {
#if ZOO_HAVE_AVX512_PATHS
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                          !(std::getenv("ZOO_NO_AVX512") && std::getenv("ZOO_NO_AVX512")[0] == '1');
  return has;
#else
  return false;
#endif
}

// Size in bytes of the last-level cache the calling core can use, as Linux's sysfs reports
// it for cpu0 (a per-CCX L3 on AMD, the shared L3 on Intel); 0 when unknown. cpuid-based
// figures (sysconf) can report the whole package's L3 on AMD parts, which no single core
// can fill, so sysfs is preferred.
inline int64_t last_level_cache_bytes() {
  static const int64_t bytes = [] {
    int64_t best = 0;
    for (int idx = 0; idx < 8; ++idx) {
      char path[96];
      std::snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
      FILE* f = std::fopen(path, "r");
      if (!f) break;
      long long value = 0;
      char unit = 0;
      const int got = std::fscanf(f, "%lld%c", &value, &unit);
      std::fclose(f);
      if (got < 1) continue;
      int64_t b = value;
      if (got == 2 && (unit == 'K' || unit == 'k')) b *= 1024;
      if (got == 2 && (unit == 'M' || unit == 'm')) b *= 1024 * 1024;
      if (b > best) best = b;
    }
    return best;
  }();
  return bytes;
}

}  // namespace cpu
}  // namespace zoo
