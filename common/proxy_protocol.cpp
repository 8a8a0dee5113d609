#include "common/proxy_protocol.hpp"

#include <linux/vm_sockets.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace pfp {
namespace {

constexpr uint8_t kVersion2 = 0x2;
constexpr size_t kInet4Block = 12;
constexpr size_t kInet6Block = 36;
constexpr size_t kUnixBlock = 216;

// An IP address and port pulled out of a sockaddr, IPv4-mapped IPv6 folded to IPv4.
struct IpSide {
    bool v6 = false;
    uint8_t addr[16] = {};  // v4: first 4 bytes
    uint8_t port[2] = {};   // network order, as in the sockaddr
};

bool ip_side(const sockaddr* sa, socklen_t len, IpSide& out) {
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return false;
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        sockaddr_in sin;
        std::memcpy(&sin, sa, sizeof sin);
        std::memcpy(out.addr, &sin.sin_addr, 4);
        std::memcpy(out.port, &sin.sin_port, 2);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        sockaddr_in6 sin6;
        std::memcpy(&sin6, sa, sizeof sin6);
        static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(sin6.sin6_addr.s6_addr, kMapped, sizeof kMapped) == 0) {
            std::memcpy(out.addr, &sin6.sin6_addr.s6_addr[12], 4);
        } else {
            out.v6 = true;
            std::memcpy(out.addr, sin6.sin6_addr.s6_addr, 16);
        }
        std::memcpy(out.port, &sin6.sin6_port, 2);
        return true;
    }
    return false;
}

void to_v6(IpSide& s) {
    if (s.v6) return;
    uint8_t v4[4];
    std::memcpy(v4, s.addr, 4);
    std::memset(s.addr, 0, sizeof s.addr);
    s.addr[10] = 0xff;
    s.addr[11] = 0xff;
    std::memcpy(&s.addr[12], v4, 4);
    s.v6 = true;
}

__attribute__((format(printf, 2, 3))) size_t format_into(std::array<char, 128>& out,
                                                         const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = std::vsnprintf(out.data(), out.size(), fmt, ap);
    va_end(ap);
    return n < 0 ? 0 : std::min(static_cast<size_t>(n), out.size() - 1);
}

bool defined_family(uint8_t fp) {
    switch (fp) {
        case kProxyFamilyUnspec:
        case kProxyTcp4:
        case kProxyUdp4:
        case kProxyTcp6:
        case kProxyUdp6:
        case kProxyUnixStream:
        case kProxyUnixDgram:
            return true;
        default:
            return false;
    }
}

// The address block a PROXY command needs for family/protocol `fp`, and its name for messages.
size_t address_block(uint8_t fp, const char** name) {
    switch (fp >> 4) {
        case 0x1:
            *name = "IPv4";
            return kInet4Block;
        case 0x2:
            *name = "IPv6";
            return kInet6Block;
        case 0x3:
            *name = "UNIX";
            return kUnixBlock;
        default:
            *name = "UNSPEC";
            return 0;
    }
}

}  // namespace

ProxyHeaderBytes encode_proxy_v2(const sockaddr* source, socklen_t source_len,
                                 const sockaddr* destination, socklen_t destination_len) noexcept {
    ProxyHeaderBytes h;
    std::memcpy(h.bytes.data(), kProxyV2Signature.data(), kProxyV2Signature.size());
    IpSide src;
    IpSide dst;
    if (!ip_side(source, source_len, src) || !ip_side(destination, destination_len, dst)) {
        h.bytes[12] =
            static_cast<uint8_t>(kVersion2 << 4 | static_cast<uint8_t>(ProxyCommand::local));
        h.bytes[13] = kProxyFamilyUnspec;
        h.bytes[14] = 0;
        h.bytes[15] = 0;
        h.size = kProxyV2FixedSize;
        if (source != nullptr && source->sa_family == AF_VSOCK &&
            source_len >= static_cast<socklen_t>(sizeof(sockaddr_vm))) {
            // The spec has no vsock family: the peer goes in a custom TLV (type 0xE0), CID and
            // port as big-endian u32, which LOCAL-aware receivers may read and others skip.
            const auto* vm = reinterpret_cast<const sockaddr_vm*>(source);
            uint8_t* p = &h.bytes[kProxyV2FixedSize];
            p[0] = kProxyTlvVsockPeer;
            p[1] = 0;
            p[2] = 8;
            for (int i = 0; i < 4; ++i) {
                p[3 + i] = static_cast<uint8_t>(vm->svm_cid >> (24 - 8 * i));
                p[7 + i] = static_cast<uint8_t>(vm->svm_port >> (24 - 8 * i));
            }
            h.bytes[15] = kProxyTlvVsockPeerSize;
            h.size = kProxyV2FixedSize + kProxyTlvVsockPeerSize;
        }
        return h;
    }
    if (src.v6 || dst.v6) {
        to_v6(src);
        to_v6(dst);
    }
    const size_t alen = src.v6 ? 16 : 4;
    const size_t block = src.v6 ? kInet6Block : kInet4Block;
    h.bytes[12] = static_cast<uint8_t>(kVersion2 << 4 | static_cast<uint8_t>(ProxyCommand::proxy));
    h.bytes[13] = src.v6 ? kProxyTcp6 : kProxyTcp4;
    h.bytes[14] = 0;
    h.bytes[15] = static_cast<uint8_t>(block);
    uint8_t* p = &h.bytes[kProxyV2FixedSize];
    std::memcpy(p, src.addr, alen);
    std::memcpy(p + alen, dst.addr, alen);
    std::memcpy(p + 2 * alen, src.port, 2);
    std::memcpy(p + 2 * alen + 2, dst.port, 2);
    h.size = kProxyV2FixedSize + block;
    return h;
}

// Validates byte have_ of the fixed part as it arrives, so a stream that is not a PROXY header
// (an HTTP request, say) fails on its first byte.
bool ProxyHeaderDecoder::check_fixed_byte(uint8_t b) noexcept {
    if (have_ < kProxyV2Signature.size()) {
        if (b == kProxyV2Signature[have_]) return true;
        message_len_ = format_into(message_,
                                   "not a PROXY protocol v2 header: byte %zu is 0x%02x, expected "
                                   "0x%02x",
                                   have_, b, kProxyV2Signature[have_]);
        return false;
    }
    if (have_ == 12) {
        if ((b >> 4) != kVersion2) {
            message_len_ = format_into(message_,
                                       "bad PROXY header: version/command byte 0x%02x has version "
                                       "%u, expected 2",
                                       b, static_cast<unsigned>(b >> 4));
            return false;
        }
        if ((b & 0x0f) > static_cast<uint8_t>(ProxyCommand::proxy)) {
            message_len_ = format_into(message_,
                                       "bad PROXY header: version/command byte 0x%02x has command "
                                       "%u, expected 0 (LOCAL) or 1 (PROXY)",
                                       b, static_cast<unsigned>(b & 0x0f));
            return false;
        }
        return true;
    }
    if (have_ == 13) {
        // LOCAL: the receiver discards the family along with the addresses (spec 2.2).
        const bool local = (buf_[12] & 0x0f) == static_cast<uint8_t>(ProxyCommand::local);
        if (local || defined_family(b)) return true;
        message_len_ = format_into(message_,
                                   "bad PROXY header: family/protocol byte 0x%02x is not one the "
                                   "spec defines",
                                   b);
        return false;
    }
    if (have_ == 15) {
        const size_t len = (static_cast<size_t>(buf_[14]) << 8) | b;
        if (kProxyV2FixedSize + len > kProxyV2MaxSize) {
            message_len_ = format_into(message_,
                                       "bad PROXY header: length %zu makes it %zu bytes, more than "
                                       "the %zu allowed",
                                       len, kProxyV2FixedSize + len, kProxyV2MaxSize);
            return false;
        }
        const bool proxy = (buf_[12] & 0x0f) == static_cast<uint8_t>(ProxyCommand::proxy);
        const char* name = "";
        const size_t block = address_block(buf_[13], &name);
        if (proxy && len < block) {
            message_len_ = format_into(message_,
                                       "bad PROXY header: length %zu is too short for the %s "
                                       "addresses (%zu bytes)",
                                       len, name, block);
            return false;
        }
        need_ = kProxyV2FixedSize + len;
    }
    return true;
}

ProxyHeaderDecoder::Result ProxyHeaderDecoder::feed(const uint8_t* data, size_t size) noexcept {
    if (status_ != Status::need_more) return {status_, 0};
    size_t used = 0;
    while (used < size && have_ < kProxyV2FixedSize) {
        const uint8_t b = data[used++];
        if (!check_fixed_byte(b)) {
            ++have_;  // consumed, like the transparent header's bad version byte
            status_ = Status::error;
            return {status_, used};
        }
        buf_[have_++] = b;
    }
    if (have_ >= kProxyV2FixedSize) {
        const size_t take = std::min(size - used, need_ - have_);
        // Keep what fits in buf_ (the addresses we return); count the rest (UNIX paths, TLVs).
        if (have_ < buf_.size()) {
            const size_t keep = std::min(take, buf_.size() - have_);
            std::memcpy(&buf_[have_], data + used, keep);
        }
        have_ += take;
        used += take;
        if (have_ == need_) finish();
    }
    return {status_, used};
}

void ProxyHeaderDecoder::finish() noexcept {
    header_ = ProxyHeader{};
    header_.command = static_cast<ProxyCommand>(buf_[12] & 0x0f);
    header_.family_protocol = buf_[13];
    header_.size = need_;
    const uint8_t* p = &buf_[kProxyV2FixedSize];
    if (header_.command == ProxyCommand::proxy) {
        const uint8_t family = buf_[13] >> 4;
        if (family == 0x1) {
            sockaddr_in sin{};
            sin.sin_family = AF_INET;
            std::memcpy(&sin.sin_addr, p, 4);
            std::memcpy(&sin.sin_port, p + 8, 2);
            std::memcpy(&header_.source.storage, &sin, sizeof sin);
            header_.source.len = sizeof sin;
            std::memcpy(&sin.sin_addr, p + 4, 4);
            std::memcpy(&sin.sin_port, p + 10, 2);
            std::memcpy(&header_.destination.storage, &sin, sizeof sin);
            header_.destination.len = sizeof sin;
        } else if (family == 0x2) {
            sockaddr_in6 sin6{};
            sin6.sin6_family = AF_INET6;
            std::memcpy(&sin6.sin6_addr, p, 16);
            std::memcpy(&sin6.sin6_port, p + 32, 2);
            std::memcpy(&header_.source.storage, &sin6, sizeof sin6);
            header_.source.len = sizeof sin6;
            std::memcpy(&sin6.sin6_addr, p + 16, 16);
            std::memcpy(&sin6.sin6_port, p + 34, 2);
            std::memcpy(&header_.destination.storage, &sin6, sizeof sin6);
            header_.destination.len = sizeof sin6;
        }
    }
    status_ = Status::done;
}

std::string_view ProxyHeaderDecoder::eof() noexcept {
    if (status_ == Status::done) return {};
    if (status_ == Status::need_more) {
        status_ = Status::error;
        if (have_ < kProxyV2FixedSize) {
            message_len_ = format_into(message_,
                                       "short PROXY header: stream ended after %zu of at least "
                                       "%zu bytes",
                                       have_, kProxyV2FixedSize);
        } else {
            message_len_ = format_into(
                message_, "short PROXY header: stream ended after %zu of %zu bytes", have_, need_);
        }
    }
    return error();
}

}  // namespace pfp
