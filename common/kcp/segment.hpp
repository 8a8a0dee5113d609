#pragma once
// KCP segment header (docs/kcp-tunnel.md, "KCP segments"): 24 bytes, little-endian, several
// segments back to back in one datagram. Bytes from the network are untrusted: a datagram is
// checked whole (every header, every length) before any segment of it is believed.
//
// Data path code: no exceptions, no allocation, no I/O.
#include <cstddef>
#include <cstdint>
#include <span>

namespace pfp::kcp {

inline constexpr size_t kSegmentHeader = 24;

enum class Command : uint8_t {
    push = 81,         // data: one fragment of a message
    ack = 82,          // acknowledges sn; ts echoes the acknowledged segment's ts
    window_ask = 83,   // "tell me your receive window" (sent while the peer's window is 0)
    window_tell = 84,  // "my receive window is wnd" (answer, or news that it reopened)
};

struct SegmentHeader {
    uint32_t conv = 0;
    uint8_t cmd = 0;
    uint8_t frg = 0;   // fragments of this message still to come after this one
    uint16_t wnd = 0;  // sender's free receive window, in segments
    uint32_t ts = 0;   // sender's clock (ms) when sent; echoed in an ack
    uint32_t sn = 0;   // sequence number (push), or the one acknowledged (ack)
    uint32_t una = 0;  // sender has received everything below this
    uint32_t len = 0;  // payload bytes after the header
};

void encode_header(const SegmentHeader& h, uint8_t* out) noexcept;  // writes kSegmentHeader
SegmentHeader decode_header(const uint8_t* in) noexcept;            // reads kSegmentHeader

enum class InputError {
    none,
    truncated,    // a header or payload runs past the datagram's end (or the datagram is empty)
    wrong_conv,   // a segment for another conversation
    bad_command,  // cmd is not one of Command
    too_long,     // a payload longer than the session's segment size, or a control one with data
};
const char* to_string(InputError e) noexcept;

struct SegmentView {
    SegmentHeader header;
    std::span<const uint8_t> payload;
};

// Walks a datagram's segments. next() yields each in turn and returns false at the end or at the
// first bad one; error() then tells which.
class SegmentReader {
  public:
    SegmentReader(std::span<const uint8_t> datagram, uint32_t conv, size_t max_payload) noexcept
        : rest_(datagram), conv_(conv), max_payload_(max_payload) {
        if (datagram.empty()) error_ = InputError::truncated;
    }
    bool next(SegmentView& out) noexcept;
    InputError error() const noexcept { return error_; }

  private:
    std::span<const uint8_t> rest_;
    uint32_t conv_;
    size_t max_payload_;
    InputError error_ = InputError::none;
};

// Checks a whole datagram; none if every segment is well formed.
InputError check_datagram(std::span<const uint8_t> datagram, uint32_t conv,
                          size_t max_payload) noexcept;

// Wrapping comparison of 32-bit sequence numbers and millisecond clocks.
inline int32_t diff32(uint32_t later, uint32_t earlier) noexcept {
    return static_cast<int32_t>(later - earlier);
}

}  // namespace pfp::kcp
