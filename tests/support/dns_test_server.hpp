#pragma once
// A small authoritative DNS server on loopback UDP for the tests of host-name upstreams: A and
// AAAA answers with a chosen TTL, NXDOMAIN for unknown names, and per-name modes (SERVFAIL, or
// silence) so a test can make a name stop resolving. Answers can change while it runs; it counts
// the queries it received for each name, so a test can wait for a re-resolution instead of
// sleeping. One thread, poll() with a short period; stopped by the destructor.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pfp::test {

class DnsTestServer {
  public:
    enum class Mode { answer, servfail, silent };
    struct Name {
        std::vector<std::string> v4, v6;  // "10.0.0.1", "fd00::1"
        uint32_t ttl = 1;
        Mode mode = Mode::answer;
    };

    DnsTestServer() {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error("dns test server: socket");
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            throw std::runtime_error("dns test server: bind");
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~DnsTestServer() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    DnsTestServer(const DnsTestServer&) = delete;
    DnsTestServer& operator=(const DnsTestServer&) = delete;

    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    void set(const std::string& name, Name n) {
        std::lock_guard lock(mu_);
        names_[lower(name)] = std::move(n);
    }
    void remove(const std::string& name) {
        std::lock_guard lock(mu_);
        names_.erase(lower(name));
    }
    // Queries received for `name` (A and AAAA each count).
    int queries(const std::string& name) {
        std::lock_guard lock(mu_);
        auto it = counts_.find(lower(name));
        return it == counts_.end() ? 0 : it->second;
    }

  private:
    static std::string lower(std::string s) {
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (!s.empty() && s.back() == '.') s.pop_back();
        return s;
    }

    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            uint8_t q[512];
            sockaddr_storage from{};
            socklen_t flen = sizeof from;
            const ssize_t n =
                ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
            if (n < 12) continue;
            std::vector<uint8_t> reply;
            if (!answer(q, static_cast<size_t>(n), reply)) continue;
            ::sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
        }
    }

    // Builds the reply to one query; false: stay silent.
    bool answer(const uint8_t* q, size_t n, std::vector<uint8_t>& out) {
        size_t pos = 12;
        std::string name;
        while (pos < n && q[pos] != 0) {
            const size_t len = q[pos];
            if (len > 63 || pos + 1 + len > n) return false;
            if (!name.empty()) name += '.';
            name.append(reinterpret_cast<const char*>(q + pos + 1), len);
            pos += 1 + len;
        }
        if (pos + 5 > n) return false;
        const size_t question_end = pos + 5;  // the root label, qtype, qclass
        const uint16_t qtype = static_cast<uint16_t>(q[pos + 1] << 8 | q[pos + 2]);
        name = lower(name);
        Name entry;
        bool known = false;
        {
            std::lock_guard lock(mu_);
            ++counts_[name];
            if (auto it = names_.find(name); it != names_.end()) {
                entry = it->second;
                known = true;
            }
        }
        if (known && entry.mode == Mode::silent) return false;
        uint8_t rcode = 0;
        if (!known) rcode = 3;  // NXDOMAIN
        if (known && entry.mode == Mode::servfail) rcode = 2;
        std::vector<std::vector<uint8_t>> records;
        if (rcode == 0) {
            const bool v6 = qtype == 28;
            if (qtype == 1 || v6) {
                for (const std::string& text : v6 ? entry.v6 : entry.v4) {
                    std::vector<uint8_t> rdata(v6 ? 16 : 4);
                    if (::inet_pton(v6 ? AF_INET6 : AF_INET, text.c_str(), rdata.data()) != 1)
                        continue;
                    records.push_back(std::move(rdata));
                }
            }
        }
        out.assign(q, q + question_end);
        out[2] = static_cast<uint8_t>(0x84 | (q[2] & 0x01));  // QR, AA, RD copied
        out[3] = static_cast<uint8_t>(0x80 | rcode);          // RA
        out[6] = 0;
        out[7] = static_cast<uint8_t>(records.size());
        out[8] = out[9] = out[10] = out[11] = 0;
        out[4] = 0;
        out[5] = 1;
        for (const auto& rdata : records) {
            const uint8_t head[] = {0xC0,
                                    12,
                                    0,
                                    static_cast<uint8_t>(qtype),
                                    0,
                                    1,
                                    static_cast<uint8_t>(entry.ttl >> 24),
                                    static_cast<uint8_t>(entry.ttl >> 16),
                                    static_cast<uint8_t>(entry.ttl >> 8),
                                    static_cast<uint8_t>(entry.ttl),
                                    0,
                                    static_cast<uint8_t>(rdata.size())};
            out.insert(out.end(), std::begin(head), std::end(head));
            out.insert(out.end(), rdata.begin(), rdata.end());
        }
        return true;
    }

    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::map<std::string, Name> names_;
    std::map<std::string, int> counts_;
    std::thread thread_;
};

}  // namespace pfp::test
