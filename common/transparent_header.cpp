#include "common/transparent_header.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace pfp {
namespace {

constexpr uint8_t kVersion4 = 0x04;
constexpr uint8_t kVersion6 = 0x06;
constexpr size_t kStandard4Size = kTransparentHeaderV4Size;
constexpr size_t kStandard6Size = kTransparentHeaderV6Size;

bool is_v4_mapped(const in6_addr& a) {
    static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a.s6_addr, kPrefix, sizeof kPrefix) == 0;
}

// `addr` is in network order (most significant octet first); the wire wants it little-endian.
void put_reversed(uint8_t* out, const uint8_t* addr, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = addr[n - 1 - i];
}

// `port_be` as it sits in a sockaddr (network order); the wire wants it little-endian.
void put_port(uint8_t* out, in_port_t port_be) {
    const uint16_t port = ntohs(port_be);
    out[0] = static_cast<uint8_t>(port & 0xff);
    out[1] = static_cast<uint8_t>(port >> 8);
}

// vsnprintf into a fixed buffer: messages are built without allocating. Returns the length.
__attribute__((format(printf, 2, 3))) size_t format_into(std::array<char, 96>& out, const char* fmt,
                                                         ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = std::vsnprintf(out.data(), out.size(), fmt, ap);
    va_end(ap);
    return n < 0 ? 0 : std::min(static_cast<size_t>(n), out.size() - 1);
}

in_port_t get_port(const uint8_t* in) {
    return htons(static_cast<uint16_t>(in[0] | (in[1] << 8)));
}

TransparentHeaderBytes encode_v4(TransparentHeaderFormat format, const uint8_t* addr,
                                 in_port_t port) {
    TransparentHeaderBytes h;
    size_t at = 0;
    if (format == TransparentHeaderFormat::standard) h.bytes[at++] = kVersion4;
    put_reversed(&h.bytes[at], addr, 4);
    put_port(&h.bytes[at + 4], port);
    h.size = at + 6;
    return h;
}

}  // namespace

std::string_view transparent_header_format_name(TransparentHeaderFormat f) noexcept {
    return name_in<TransparentHeaderFormat>(kTransparentHeaderFormatNames, f);
}

std::optional<TransparentHeaderFormat> transparent_header_format_from_name(
    std::string_view name) noexcept {
    return value_in<TransparentHeaderFormat>(kTransparentHeaderFormatNames, name);
}

std::optional<TransparentHeaderBytes> encode_transparent_header(TransparentHeaderFormat format,
                                                                const sockaddr_in& dst) noexcept {
    uint8_t addr[4];
    std::memcpy(addr, &dst.sin_addr, 4);
    return encode_v4(format, addr, dst.sin_port);
}

std::optional<TransparentHeaderBytes> encode_transparent_header(TransparentHeaderFormat format,
                                                                const sockaddr_in6& dst) noexcept {
    if (is_v4_mapped(dst.sin6_addr))
        return encode_v4(format, &dst.sin6_addr.s6_addr[12], dst.sin6_port);
    if (format != TransparentHeaderFormat::standard) return std::nullopt;
    TransparentHeaderBytes h;
    h.bytes[0] = kVersion6;
    put_reversed(&h.bytes[1], dst.sin6_addr.s6_addr, 16);
    put_port(&h.bytes[17], dst.sin6_port);
    h.size = kStandard6Size;
    return h;
}

std::optional<TransparentHeaderBytes> encode_transparent_header(TransparentHeaderFormat format,
                                                                const sockaddr* dst,
                                                                socklen_t len) noexcept {
    if (dst == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return std::nullopt;
    // Copies, so that a caller's sockaddr of any alignment is fine.
    if (dst->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        sockaddr_in sin;
        std::memcpy(&sin, dst, sizeof sin);
        return encode_transparent_header(format, sin);
    }
    if (dst->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        sockaddr_in6 sin6;
        std::memcpy(&sin6, dst, sizeof sin6);
        return encode_transparent_header(format, sin6);
    }
    return std::nullopt;
}

TransparentHeaderDecoder::Result TransparentHeaderDecoder::feed(const uint8_t* data,
                                                                size_t size) noexcept {
    if (status_ != Status::need_more) return {status_, 0};
    size_t used = 0;
    if (need_ == 0) {  // standard format, version byte not seen yet
        if (size == 0) return {status_, 0};
        const uint8_t version = data[0];
        buf_[have_++] = version;
        used = 1;
        if (version == kVersion4) {
            need_ = kStandard4Size;
        } else if (version == kVersion6) {
            need_ = kStandard6Size;
        } else {
            status_ = Status::error;
            message_len_ = format_into(message_,
                                       "bad transparent header: version byte 0x%02x, expected "
                                       "0x04 (IPv4) or 0x06 (IPv6)",
                                       version);
            return {status_, used};
        }
    }
    const size_t take = std::min(size - used, need_ - have_);
    if (take != 0) std::memcpy(&buf_[have_], data + used, take);
    have_ += take;
    used += take;
    if (have_ == need_) finish();
    return {status_, used};
}

void TransparentHeaderDecoder::finish() noexcept {
    dst_ = SockAddr{};
    const uint8_t* p = buf_.data();
    if (format_ == TransparentHeaderFormat::standard) ++p;  // the version byte
    if (need_ == kStandard6Size) {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        put_reversed(sin6.sin6_addr.s6_addr, p, 16);
        sin6.sin6_port = get_port(p + 16);
        std::memcpy(&dst_.storage, &sin6, sizeof sin6);
        dst_.len = sizeof sin6;
    } else {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        put_reversed(reinterpret_cast<uint8_t*>(&sin.sin_addr), p, 4);
        sin.sin_port = get_port(p + 4);
        std::memcpy(&dst_.storage, &sin, sizeof sin);
        dst_.len = sizeof sin;
    }
    status_ = Status::done;
}

std::string_view TransparentHeaderDecoder::eof() noexcept {
    if (status_ == Status::done) return {};
    if (status_ == Status::need_more) {
        status_ = Status::error;
        if (need_ == 0) {
            message_len_ = format_into(message_,
                                       "short transparent header: stream ended after 0 bytes, "
                                       "expected 7 (IPv4) or 19 (IPv6)");
        } else {
            message_len_ = format_into(
                message_, "short transparent header: stream ended after %zu of %zu bytes", have_,
                need_);
        }
    }
    return error();
}

}  // namespace pfp
