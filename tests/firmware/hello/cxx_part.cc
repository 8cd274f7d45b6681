// C++ half of the hello test firmware: a static object whose constructor must run before
// main (startup.c calls __libc_init_array).
#include <cstdint>

namespace {
struct Marker {
  volatile std::uint32_t value;
  Marker() : value(0x600DC0DEu) {}
};
Marker marker;
}  // namespace

extern "C" int hello_cxx_check(void) { return marker.value == 0x600DC0DEu; }
