// fuzz_check.hpp: CHECK() for fuzz targets: an invariant that fails aborts,
// so libFuzzer records the input as a crash (assert() would vanish under
// NDEBUG).
#pragma once

#include <cstdio>
#include <cstdlib>

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)
