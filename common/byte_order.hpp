#pragma once
// Big-endian (network order) fields read from and written to packet bytes. Data path code.
#include <cstddef>
#include <cstdint>

namespace pfp {

inline uint16_t be16(const uint8_t* p) noexcept {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

inline uint32_t be32(const uint8_t* p) noexcept {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

inline void put_be16(uint8_t* p, size_t v) noexcept {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

inline void put_be32(uint8_t* p, uint32_t v) noexcept {
    put_be16(p, v >> 16);
    put_be16(p + 2, v & 0xffff);
}

}  // namespace pfp
