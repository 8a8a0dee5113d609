#pragma once
// PROXY protocol version 2 (haproxy's proxy-protocol.txt, section 2.2): a relay tells its upstream
// who the client was. Byte layout and our choices: docs/wire-formats.md.
//
//   0  12 bytes  signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A  ("\r\n\r\n\0\r\nQUIT\n")
//   12 1 byte    version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
//   13 1 byte    family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) | protocol (low nibble:
//                0 UNSPEC, 1 STREAM, 2 DGRAM)
//   14 2 bytes   length of what follows, big-endian
//   16 ...       INET: src addr 4, dst addr 4, src port 2, dst port 2 (12 bytes)
//                INET6: src addr 16, dst addr 16, src port 2, dst port 2 (36 bytes)
//                UNIX: src path 108, dst path 108 (216 bytes); then TLVs up to the length
// All multi-byte fields are in network byte order. Data path code: no exceptions, no allocation.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/endpoint.hpp"

namespace pfp {

inline constexpr std::array<uint8_t, 12> kProxyV2Signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                           0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
inline constexpr size_t kProxyV2FixedSize = 16;
// The spec's recommendation: a receiver reading at most this much always gets the whole header.
inline constexpr size_t kProxyV2MaxSize = 536;
// The largest header the encoder writes: TCP over IPv6, no TLVs.
inline constexpr size_t kProxyV2MaxEncodedSize = kProxyV2FixedSize + 36;

enum class ProxyCommand : uint8_t { local = 0x0, proxy = 0x1 };

// Byte 13 values the spec defines; every other value is invalid.
inline constexpr uint8_t kProxyFamilyUnspec = 0x00;
inline constexpr uint8_t kProxyTcp4 = 0x11;
inline constexpr uint8_t kProxyUdp4 = 0x12;
inline constexpr uint8_t kProxyTcp6 = 0x21;
inline constexpr uint8_t kProxyUdp6 = 0x22;
inline constexpr uint8_t kProxyUnixStream = 0x31;
inline constexpr uint8_t kProxyUnixDgram = 0x32;

// LOCAL headers for a vsock client carry it in this custom TLV (PP2_TYPE_MIN_CUSTOM): 1 byte
// type, 2 bytes length (8), CID and port as big-endian u32.
inline constexpr uint8_t kProxyTlvVsockPeer = 0xE0;
inline constexpr uint8_t kProxyTlvVsockPeerSize = 11;

struct ProxyHeaderBytes {
    std::array<uint8_t, kProxyV2MaxEncodedSize> bytes{};
    size_t size = 0;

    const uint8_t* data() const { return bytes.data(); }
    std::span<const uint8_t> span() const { return {bytes.data(), size}; }
};

// The header a stream relay sends first on its upstream connection. `source` is the client's
// address (the accepted connection's peer), `destination` the address the client connected to.
//   both IPv4                 PROXY, TCP over IPv4 (0x21 0x11, length 12)
//   both IP, any IPv6         PROXY, TCP over IPv6 (0x21 0x21, length 36); an IPv4 side is
//                             written IPv4-mapped (::ffff:a.b.c.d), as haproxy does
//   anything else (vsock,     LOCAL, UNSPEC, length 0 (0x20 0x00 00 00): the spec has no vsock
//   unix, a short length)     family; LOCAL makes the receiver use the connection's own endpoints,
//                             which every receiver must accept
// IPv4-mapped IPv6 addresses count as IPv4, so a dual-stack listener still sends TCP over IPv4
// for an IPv4 client and IPv4 upstream. No TLVs.
ProxyHeaderBytes encode_proxy_v2(const sockaddr* source, socklen_t source_len,
                                 const sockaddr* destination, socklen_t destination_len) noexcept;
inline ProxyHeaderBytes encode_proxy_v2(const SockAddr& source,
                                        const SockAddr& destination) noexcept {
    return encode_proxy_v2(source.get(), source.len, destination.get(), destination.len);
}

// What a decoded header says.
struct ProxyHeader {
    ProxyCommand command = ProxyCommand::local;
    uint8_t family_protocol = kProxyFamilyUnspec;  // byte 13 as received
    // Set (AF_INET / AF_INET6, ports included) for PROXY over INET or INET6, stream or datagram;
    // len 0 otherwise: LOCAL, UNSPEC, and UNIX, whose paths we do not return (the spec lets a
    // receiver treat a family it does not support as UNSPEC).
    SockAddr source;
    SockAddr destination;
    size_t size = 0;  // the whole header, TLVs (skipped, unparsed) included

    bool has_addresses() const { return source.len != 0; }
};

// Reads a v2 header from a stream that may deliver it in any number of pieces; bytes after the
// header are payload and are left to the caller (feed() reports how many it consumed). Rejects as
// early as it can: the first byte that breaks the signature, a version other than 2, a command
// other than LOCAL/PROXY, an undefined family/protocol byte, a length beyond kProxyV2MaxSize or
// too short for the addresses. For LOCAL the family and addresses are skipped, as the spec says.
class ProxyHeaderDecoder {
  public:
    enum class Status : uint8_t { need_more, done, error };
    struct Result {
        Status status;
        size_t consumed;  // bytes of this feed that belong to the header (<= size)
    };

    // Once done or error, further feeds consume nothing and repeat the status.
    Result feed(const uint8_t* data, size_t size) noexcept;
    Result feed(std::span<const uint8_t> in) noexcept { return feed(in.data(), in.size()); }

    // The stream ended. Still waiting: enters the error state and returns the "short PROXY
    // header" message. Done: empty. Error: the error message.
    std::string_view eof() noexcept;

    Status status() const { return status_; }
    const ProxyHeader& header() const { return header_; }  // valid when done
    std::string_view error() const { return {message_.data(), message_len_}; }
    // Bytes consumed over all feeds (on error, through the offending byte).
    size_t header_bytes() const { return have_; }

  private:
    bool check_fixed_byte(uint8_t b) noexcept;
    void finish() noexcept;

    Status status_ = Status::need_more;
    size_t have_ = 0;
    size_t need_ = kProxyV2FixedSize;  // the whole header once the length is known
    // The fixed part and the largest address block we return (INET6); UNIX paths and TLVs are
    // counted but not stored.
    std::array<uint8_t, kProxyV2MaxEncodedSize> buf_{};
    ProxyHeader header_;
    std::array<char, 128> message_{};
    size_t message_len_ = 0;
};

}  // namespace pfp
