#pragma once
// Whole IP packets for the packet-kind tests, as a peer writes them to a raw packet stream: UDP
// over IPv4 (UDP checksum 0, none; the kernel fills the IP header's) or IPv6 (checksum computed,
// as IPv6 requires).
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pfp::test {

using Bytes = std::vector<uint8_t>;

inline uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t{p[i]} << 8) | p[i + 1];
    if (n % 2) sum += uint32_t{p[n - 1]} << 8;
    return sum;
}

inline uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

// An IP packet from src to dst (the family follows dst) with its header filled in (IPv4: the
// kernel fills the header checksum) and `l4_len` zero bytes of protocol `proto` after it.
inline Bytes ip_packet(const std::string& src, const std::string& dst, uint8_t proto,
                       size_t l4_len) {
    const bool v6 = dst.find(':') != std::string::npos;
    Bytes p((v6 ? 40 : 20) + l4_len);
    if (v6) {
        p[0] = 0x60;
        p[4] = static_cast<uint8_t>(l4_len >> 8);
        p[5] = static_cast<uint8_t>(l4_len);
        p[6] = proto;
        p[7] = 64;
        inet_pton(AF_INET6, src.c_str(), &p[8]);
        inet_pton(AF_INET6, dst.c_str(), &p[24]);
    } else {
        p[0] = 0x45;
        p[2] = static_cast<uint8_t>(p.size() >> 8);
        p[3] = static_cast<uint8_t>(p.size());
        p[8] = 64;
        p[9] = proto;
        inet_pton(AF_INET, src.c_str(), &p[12]);
        inet_pton(AF_INET, dst.c_str(), &p[16]);
    }
    return p;
}

// The TCP or UDP checksum of `p` (an IP packet from ip_packet(), its transport header at `ip`):
// the pseudo-header (addresses, transport length, protocol) and the transport bytes, folded.
inline uint16_t transport_checksum(const Bytes& p, size_t ip, uint8_t proto) {
    const size_t len = p.size() - ip;
    const uint32_t pseudo = ip == 40 ? sum16(&p[8], 32) : sum16(&p[12], 8);
    return fold(sum16(&p[ip], len, pseudo + static_cast<uint32_t>(len) + proto));
}

// UDP from src:sport to dst:dport; the family follows dst.
inline Bytes udp_packet(const std::string& src, const std::string& dst, const std::string& payload,
                        uint16_t sport = 4000, uint16_t dport = 5000) {
    const bool v6 = dst.find(':') != std::string::npos;
    const size_t ip = v6 ? 40 : 20;
    const size_t udp_len = 8 + payload.size();
    Bytes p = ip_packet(src, dst, IPPROTO_UDP, udp_len);
    uint8_t* u = &p[ip];
    u[0] = static_cast<uint8_t>(sport >> 8);
    u[1] = static_cast<uint8_t>(sport);
    u[2] = static_cast<uint8_t>(dport >> 8);
    u[3] = static_cast<uint8_t>(dport);
    u[4] = static_cast<uint8_t>(udp_len >> 8);
    u[5] = static_cast<uint8_t>(udp_len);
    std::memcpy(u + 8, payload.data(), payload.size());
    if (v6) {
        uint16_t c = transport_checksum(p, ip, IPPROTO_UDP);
        if (c == 0) c = 0xffff;
        u[6] = static_cast<uint8_t>(c >> 8);
        u[7] = static_cast<uint8_t>(c);
    }
    return p;
}

// A TCP packet (ACK, PSH and FIN; sequence number `seq`; a 20-byte header) from src:40000 to
// dst:80 carrying `payload`, its checksum filled in; the family follows dst.
inline Bytes tcp_packet(const std::string& src, const std::string& dst, const std::string& payload,
                        uint32_t seq) {
    const size_t ip = dst.find(':') != std::string::npos ? 40 : 20;
    Bytes p = ip_packet(src, dst, IPPROTO_TCP, 20 + payload.size());
    uint8_t* t = &p[ip];
    t[0] = 40000 >> 8;
    t[1] = 40000 & 0xff;
    t[3] = 80;
    for (int i = 0; i < 4; ++i) t[4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
    t[12] = 5 << 4;
    t[13] = 0x19;  // ACK, PSH, FIN
    t[14] = 0xff;
    std::memcpy(t + 20, payload.data(), payload.size());
    const uint16_t c = transport_checksum(p, ip, IPPROTO_TCP);
    t[16] = static_cast<uint8_t>(c >> 8);
    t[17] = static_cast<uint8_t>(c);
    return p;
}

}  // namespace pfp::test
