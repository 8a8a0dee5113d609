#pragma once
// Framing of the raw packet stream (docs/wire-formats.md, "Raw packet stream"): IP packets back to
// back with nothing added, each framed by its own header — IPv4 by Total Length (bytes 2-3,
// big-endian), IPv6 by 40 + Payload Length (bytes 4-5). This is what deployed Oyster peers send
// for IPv4. The bytes come from the peer and are untrusted: every header is checked before its
// length is believed, and an invalid one ends the stream (there is no way to find the next packet
// boundary again). Checks run as soon as the bytes they need are in, so where reads split the
// stream never changes the verdict.
//
// Data path code: no exceptions, no allocation after construction, no I/O.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pfp {

inline constexpr size_t kIpv4MinHeader = 20;
inline constexpr size_t kIpv6Header = 40;
inline constexpr size_t kMaxFramedPacket = kIpv6Header + 65535;  // largest IPv6 non-jumbogram

// The verdict on the start of one packet.
struct PacketHeaderCheck {
    enum class Status { need_more, length_known, invalid };
    Status status = Status::need_more;
    size_t length = 0;         // the whole packet's length, when length_known
    size_t field_offset = 0;   // invalid: the offending field's offset within the packet
    std::string_view field;    // invalid: its name ("version", "IHL", ...)
    std::string_view problem;  // invalid: what is wrong with it
};

// Looks at the first bytes of a packet (as many as are in; fewer than a header is fine).
PacketHeaderCheck check_packet_header(std::span<const uint8_t> head) noexcept;

// Reassembles packets from stream reads: read into write_space(), commit() what arrived, then take
// packets with next() until it says need_more. Holds at most one partial packet between reads.
class PacketFramer {
  public:
    enum class Status { packet, need_more, error };
    struct Next {
        Status status = Status::need_more;
        std::span<const uint8_t> packet;  // valid until the next write_space()
    };

    explicit PacketFramer(size_t capacity = 4 * kMaxFramedPacket);

    // Forgets the stream (bytes held, offsets, counts, an error): the next byte committed starts a
    // new one, as in a new framer, whose buffer this one keeps.
    void reset() noexcept;

    std::span<uint8_t> write_space() noexcept;  // never empty unless the framer is in error
    void commit(size_t n) noexcept;             // n <= write_space().size()
    Next next() noexcept;

    // After Status::error: one line naming the stream offset, the field and the problem.
    const std::string& error() const noexcept { return error_; }
    // At end of stream: empty if it ended on a packet boundary, else one line saying where the
    // unfinished packet started and how much of it came.
    std::string eof_error() const;
    uint64_t stream_offset() const noexcept { return offset_; }  // of the next packet's start
    uint64_t packets() const noexcept { return packets_; }

  private:
    std::vector<uint8_t> buf_;
    size_t start_ = 0;  // first unconsumed byte
    size_t end_ = 0;    // one past the last committed byte
    uint64_t offset_ = 0;
    uint64_t packets_ = 0;
    std::string error_;
};

}  // namespace pfp
