#pragma once
// The transparent destination header (docs/wire-formats.md): ip-to-vsock-transparent
// sends the connection's original destination before any payload, vsock-to-ip-transparent reads
// it and connects there. Byte layouts with examples: docs/wire-formats.md.
//
//   standard   IPv4:  04 | addr u32 LE (4) | port u16 LE (2)             7 bytes
//              IPv6:  06 | addr u128 LE (16, octets reversed) | port LE  19 bytes
//   oyster-v4  IPv4:  addr u32 LE (4) | port u16 LE (2)                  6 bytes, no version byte
//
// Data path code: no exceptions, no allocation, no I/O.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "common/endpoint.hpp"
#include "common/names.hpp"

namespace pfp {

enum class TransparentHeaderFormat : uint8_t {
    standard,   // the documented format: version byte, IPv4 or IPv6
    oyster_v4,  // deployed Oyster binaries: 6 bytes, IPv4 only
};

// The one spelling of each format, for the policy's `header`, the handover and messages.
inline constexpr std::array<Named<TransparentHeaderFormat>, 2> kTransparentHeaderFormatNames{{
    {TransparentHeaderFormat::standard, "standard"},
    {TransparentHeaderFormat::oyster_v4, "oyster-v4"},
}};

// "standard" / "oyster-v4" (the latter is the policy's `header` value for the legacy format).
std::string_view transparent_header_format_name(TransparentHeaderFormat f) noexcept;
std::optional<TransparentHeaderFormat> transparent_header_format_from_name(
    std::string_view name) noexcept;

inline constexpr size_t kTransparentHeaderV4Size = 7;
inline constexpr size_t kTransparentHeaderV6Size = 19;
inline constexpr size_t kTransparentHeaderOysterSize = 6;
inline constexpr size_t kTransparentHeaderMaxSize = kTransparentHeaderV6Size;

struct TransparentHeaderBytes {
    std::array<uint8_t, kTransparentHeaderMaxSize> bytes{};
    size_t size = 0;

    const uint8_t* data() const { return bytes.data(); }
    std::span<const uint8_t> span() const { return {bytes.data(), size}; }
};

// IPv4-mapped IPv6 destinations (::ffff:a.b.c.d) are sent as IPv4 in both formats: the host is an
// IPv4 host, and the peer then connects with an AF_INET socket. std::nullopt for IPv6 in
// oyster-v4 and, in the sockaddr form, for any other family or a length too short for the family.
std::optional<TransparentHeaderBytes> encode_transparent_header(TransparentHeaderFormat format,
                                                                const sockaddr_in& dst) noexcept;
std::optional<TransparentHeaderBytes> encode_transparent_header(TransparentHeaderFormat format,
                                                                const sockaddr_in6& dst) noexcept;
std::optional<TransparentHeaderBytes> encode_transparent_header(TransparentHeaderFormat format,
                                                                const sockaddr* dst,
                                                                socklen_t len) noexcept;

// Reads the header from a stream that may deliver it in any number of pieces. Bytes after the
// header in the same read are payload: feed() reports how many it consumed and leaves the rest.
//
//   TransparentHeaderDecoder d(format);
//   auto r = d.feed(buf, n);                 // after every read
//   if (r.status == done) { connect(d.destination()); relay(buf + r.consumed, n - r.consumed); }
//   if (r.status == error) log(d.error());   // bad version byte
//   on EOF while need_more: log(d.eof());    // short header
class TransparentHeaderDecoder {
  public:
    enum class Status : uint8_t { need_more, done, error };
    struct Result {
        Status status;
        size_t consumed;  // bytes of this feed that belong to the header (<= size)
    };

    explicit TransparentHeaderDecoder(
        TransparentHeaderFormat format = TransparentHeaderFormat::standard) noexcept
        : format_(format),
          need_(format == TransparentHeaderFormat::oyster_v4 ? kTransparentHeaderOysterSize : 0) {}

    // Once done or error, further feeds consume nothing and repeat the status.
    Result feed(const uint8_t* data, size_t size) noexcept;
    Result feed(std::span<const uint8_t> in) noexcept { return feed(in.data(), in.size()); }

    // The stream ended. Still waiting for bytes: enters the error state and returns the "short
    // transparent header" message. Done: empty. Error: the error message.
    std::string_view eof() noexcept;

    Status status() const { return status_; }
    // AF_INET or AF_INET6 with the port set; valid when done (len 0 before).
    const SockAddr& destination() const { return dst_; }
    // One line naming the offending byte in hex; valid in the error state, empty otherwise.
    std::string_view error() const { return {message_.data(), message_len_}; }
    // Bytes consumed over all feeds (on error, through the offending byte).
    size_t header_bytes() const { return have_; }

  private:
    void finish() noexcept;

    TransparentHeaderFormat format_;
    Status status_ = Status::need_more;
    size_t have_ = 0;
    size_t need_;  // total header size once known (standard: 0 until the version byte)
    std::array<uint8_t, kTransparentHeaderMaxSize> buf_{};
    SockAddr dst_;
    std::array<char, 96> message_{};
    size_t message_len_ = 0;
};

}  // namespace pfp
