// libFuzzer entry point for the datagram path's address handling: the client address recvmsg
// reports (untrusted bytes and an untrusted length) made into a flow key, and the flow table that
// keys on it. Byte 0 is the address length, the next bytes the address; what follows drives table
// operations. A key must be a complete IPv4 or IPv6 address with a port, normalise to itself, print
// on one line, and the table must find exactly what it holds while it evicts in activity order.
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "workers/flow_table.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const auto claimed = static_cast<socklen_t>(data[0]);
    sockaddr_storage ss{};
    const size_t n = std::min(size - 1, sizeof(sockaddr_in6));
    std::memcpy(&ss, data + 1, n);
    // recvmsg never reports more than the buffer, but the parser may not trust even that.
    const auto key = pfp::worker::flow_key(reinterpret_cast<const sockaddr*>(&ss), claimed);
    if (key) {
        check(key->family() == AF_INET || key->family() == AF_INET6);
        check(key->len == (key->family() == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)));
        check(claimed >= key->len);
        const auto again = pfp::worker::flow_key(key->get(), key->len);
        check(again && *again == *key);
        check(pfp::worker::FlowKeyHash{}(*again) == pfp::worker::FlowKeyHash{}(*key));
        const std::string text = pfp::worker::flow_key_text(*key);
        check(!text.empty() && text.find('\n') == std::string::npos);
    }
    // The table: each later byte inserts (or refreshes) a key made from it, evicting the least
    // recently active flow when full. A plain list in activity order is the model it must match.
    pfp::worker::FlowTable table(4);
    std::vector<pfp::worker::FlowKey> model;  // least recently active first
    auto now = pfp::Clock::time_point{};
    for (size_t i = 1 + n; i < size; ++i) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = static_cast<in_port_t>(1 + (data[i] & 0x7));
        a.sin_addr.s_addr = data[i] >> 3;
        const auto k = pfp::worker::flow_key(reinterpret_cast<const sockaddr*>(&a), sizeof a);
        check(k.has_value());
        now += std::chrono::milliseconds(1);
        const auto in_model = std::find(model.begin(), model.end(), *k);
        pfp::worker::Flow* f = table.find(*k);
        check((f != nullptr) == (in_model != model.end()));
        if (f) {
            check(f->client == *k);
            table.touch(*f, now);
            model.erase(in_model);
        } else {
            if (table.full()) {
                pfp::worker::Flow* old = table.least_recent();
                check(old != nullptr && old->client == model.front());
                table.remove(*old);
                model.erase(model.begin());
            }
            table.insert(*k, now);
        }
        model.push_back(*k);
        check(table.size() == model.size() && table.size() <= table.capacity());
        check(table.most_recent()->client == model.back());
        check(table.least_recent()->client == model.front());
    }
    return 0;
}
