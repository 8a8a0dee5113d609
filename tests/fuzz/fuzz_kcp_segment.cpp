// libFuzzer entry point for KCP segment input (untrusted once a datagram has been opened: the
// peer holds the key, or there is no key). The input is a script of operations on one session:
// feed a datagram, queue a message, flush after some milliseconds, read messages. Whatever the
// peer sends, the session must not crash, must hand out only well-formed datagrams of at most
// mtu bytes for its own conversation, must deliver only messages within max_message, and must
// keep its queues within their bounds.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/kcp/kcp.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

constexpr uint32_t kConv = 0x01020304;

struct Sink final : pfp::kcp::Output {
    size_t mtu = 0;
    size_t mss = 0;
    void kcp_output(std::span<const uint8_t> d) override {
        check(!d.empty() && d.size() <= mtu);
        check(pfp::kcp::check_datagram(d, kConv, mss) == pfp::kcp::InputError::none);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    pfp::kcp::Config config = pfp::kcp::Config::fast(64 + data[0]);  // small: many fragments
    config.rcv_wnd = 1 + data[1] % 32;
    config.snd_wnd = 1 + data[1] / 8;
    config.no_congestion = (data[1] & 1) != 0;
    config.max_message = 4096;
    data += 2;
    size -= 2;
    uint32_t now = UINT32_MAX - 1000;  // the clock wraps during long inputs
    pfp::kcp::Kcp kcp(kConv, config, now);
    Sink sink;
    sink.mtu = config.mtu;
    sink.mss = kcp.mss();
    std::vector<uint8_t> message;
    const size_t max_held = 2 * size_t{config.rcv_wnd};
    while (size >= 2) {
        const uint8_t op = data[0] % 4;
        const size_t arg = data[1];
        data += 2;
        size -= 2;
        switch (op) {
            case 0: {  // a datagram of arg * 4 bytes (or what is left)
                const size_t n = std::min(size, arg * 4);
                kcp.input({data, n}, now);
                data += n;
                size -= n;
                break;
            }
            case 1:  // queue a message
                kcp.send(std::vector<uint8_t>(arg * 20, 0x5a));
                break;
            case 2:  // time passes, then flush
                now += arg * 5;
                kcp.flush(now, sink);
                // Anything left to do has a deadline after this flush.
                if (const auto due = kcp.next_deadline()) check(pfp::kcp::diff32(*due, now) > 0);
                break;
            case 3:
                for (int i = 0; i < 4; ++i) {
                    const auto peek = kcp.peek_size();
                    const pfp::kcp::Status s = kcp.recv(message);
                    if (s != pfp::kcp::Status::ok) {
                        check(message.empty());
                        break;
                    }
                    check(message.size() <= config.max_message);
                    check(peek && *peek == message.size());
                }
                break;
        }
        check(kcp.waiting_send() <= 2 * size_t{config.snd_wnd} + 256);
        check(kcp.received_held() <= max_held);
    }
    return 0;
}
